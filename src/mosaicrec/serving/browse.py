"""What the web page (``/ui``) reads beside the API's lists: users by id prefix, a user's history, item
cards, an item's media file, the models in the model root and the evaluation report.

Everything here reads; the page writes through the API's own routes (events, uploads, reloads), so a
write from the page is checked exactly as any other client's.
"""

from __future__ import annotations

import bisect
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mosaicrec.errors import MosaicError, UnknownItemError, UnknownUserError
from mosaicrec.serving.service import Service

#: model folders listed for the page's model switch (a model root may hold many runs)
MAX_MODELS = 200
#: the report files the page shows: ``mosaicrec evaluate``'s table and plots
REPORT_TABLE = "results.json"
FILTER_VALUES = 40
REPORT_METRICS = ("ndcg", "recall", "precision", "map", "mrr", "hitrate", "coverage", "diversity", "novelty")


def _worth(row: dict[str, Any]) -> dict[str, Any]:
    """One modality's contribution as the page shows it (strings cut short, numbers as numbers)."""
    return {"model": str(row["model"])[:200], "scenario": str(row["scenario"])[:60],
            "modality": str(row["modality"])[:60], "metric": str(row["metric"])[:20],
            **{k: float(row[k]) for k in ("diff", "ci_low", "ci_high")}}


@dataclass
class Card:
    """An item as the page shows it: title, attributes, a short text, and whether it has media to play."""

    item_id: str
    title: str
    attributes: dict[str, Any] = field(default_factory=dict)
    text: str | None = None
    image: bool = False
    audio: bool = False
    video: bool = False


class Browse:
    """Read helpers over a :class:`Service` for the page; ``report_dir`` is the folder an evaluation wrote
    (``mosaicrec evaluate --out``), given on the server's command line, never by a client."""

    def __init__(self, service: Service, report_dir: str | Path | None = None) -> None:
        self.service = service
        self.report_dir = Path(os.path.realpath(report_dir)) if report_dir is not None else None
        self._users: tuple[tuple[int, int, int], list[str]] | None = None
        self._filters: tuple[Any, dict[str, list[str]]] | None = None
        self._frames: dict[tuple[str, int], bytes] = {}

    # -- users ----------------------------------------------------------------------------------------
    def _user_list(self) -> list[str]:
        svc = self.service
        view, live = svc.snapshot.view, svc.live
        key = (id(view), len(live.users), len(live.erased))
        if self._users is None or self._users[0] != key:
            erased = set(live.erased)
            self._users = key, sorted((set(view.users) | set(live.users)) - erased)
        return self._users[1]

    def find_users(self, prefix: str, limit: int) -> list[dict[str, Any]]:
        """Users whose id starts with ``prefix`` (all users for ``""``), in id order, with their like count."""
        users = self._user_list()
        at = bisect.bisect_left(users, prefix)
        found = []
        for u in users[at:at + limit]:
            if not u.startswith(prefix):
                break
            found.append({"user_id": u, "likes": len(self.service.live.get(u).positives)})
        return found

    def history(self, user_id: str, k: int) -> dict[str, Any]:
        """The user's latest ``k`` events, newest first: each item's card, when, and whether it was a like."""
        svc = self.service
        if user_id in svc.live.erased or (user_id not in svc.live.users and user_id not in svc.snapshot.view.users):
            raise UnknownUserError(f"unknown user {user_id!r}")
        ev = svc.live.get(user_id)
        latest = list(reversed(ev.last))[:k]
        cards = self.cards([i for i, _, _ in latest])
        return {"user_id": user_id, "likes": len(ev.positives), "dislikes": len(ev.negatives),
                "events": [{"item": cards.get(i) or Card(i, i), "timestamp": t, "liked": p} for i, t, p in latest]}

    # -- items ----------------------------------------------------------------------------------------
    def cards(self, item_ids: list[str]) -> dict[str, Card]:
        """Cards of the stored items among ``item_ids`` (unknown ids are left out)."""
        media = self.service.media
        rows = self.service.items(*dict.fromkeys(item_ids))
        cards = {}
        for r in rows.itertuples(index=False):
            texts = r.texts or {}
            text = next((str(v) for k, v in texts.items() if k in ("description", "text", "plot") and v), None)
            if text is None:
                text = next((str(v) for v in texts.values() if v), None)
            cards[str(r.item_id)] = Card(str(r.item_id), str(r.title or r.item_id), dict(r.attributes or {}),
                                         text[:400] if text else None, media.servable(r.image, "image") is not None,
                                         media.servable(r.audio, "audio") is not None,
                                         media.servable(getattr(r, "video", None), "video") is not None)
        return cards

    def media_file(self, item_id: str, kind: str) -> tuple[Path, str]:
        """The file and media type of the item's image, audio or video, when it lies in the media root."""
        if kind not in ("image", "audio", "video"):
            raise MosaicError(f"media kind must be image, audio, video or frame, not {kind[:20]!r}")
        rows = self.service.items(item_id)
        if not len(rows):
            raise UnknownItemError(f"unknown item {item_id!r}")
        found = self.service.media.servable(rows.iloc[0][kind], kind)
        if found is None:
            raise UnknownItemError(f"item {item_id!r} has no {kind} the server can serve (none, or not in its "
                                   "media root)")
        return found

    def video_frame(self, item_id: str) -> bytes:
        """The first frame of the item's video as JPEG (its card image), decoded in the sandbox; the last
        few are kept in memory, keyed by the file and its modification time."""
        path, _ = self.media_file(item_id, "video")
        key = (str(path), path.stat().st_mtime_ns)
        if key not in self._frames:
            if len(self._frames) >= 64:
                self._frames.pop(next(iter(self._frames)))
            self._frames[key] = self.service.media.video_frame(path)
        return self._frames[key]

    def filters(self) -> dict[str, list[str]]:
        """Attributes worth filtering on (2–100 distinct values) and their commonest values, per catalog."""
        catalog = self.service.snapshot.catalog
        if self._filters is None or self._filters[0] is not catalog:
            counts: dict[str, Counter] = {}
            for attrs in catalog.attributes:
                for key, have in attrs.items():
                    for value in (have if isinstance(have, list) else [have]):
                        if isinstance(value, (str, int, bool)) and len(str(value)) <= 100:
                            counts.setdefault(str(key), Counter())[str(value)] += 1
            self._filters = catalog, {k: [v for v, _ in c.most_common(FILTER_VALUES)]
                                      for k, c in sorted(counts.items()) if 2 <= len(c) <= 100}
        return self._filters[1]

    # -- models and the report ------------------------------------------------------------------------
    def models(self) -> list[str]:
        """Model folders under the model root (one or two levels down), relative to it, for reloads."""
        root = self.service.model_root
        if root is None or not root.is_dir():
            return []
        found: list[str] = []
        for path in sorted(root.glob("*/model.json")) + sorted(root.glob("*/*/model.json")):
            real = Path(os.path.realpath(path.parent))
            if root in real.parents:  # a symlinked folder pointing out of the root is not offered
                found.append(path.parent.relative_to(root).as_posix())
            if len(found) >= MAX_MODELS:
                break
        return found

    def report(self) -> dict[str, Any] | None:
        """The evaluation report's rows (model, metrics) and plot names; ``None`` without one."""
        folder = self.report_dir
        if folder is None or not folder.is_dir():
            return None
        rows: list[dict[str, Any]] = []
        modalities: list[dict[str, Any]] = []
        table = folder / REPORT_TABLE
        if table.is_file():
            try:
                data = json.loads(table.read_text())
                for r in data.get("models", [])[:100]:
                    metrics = {k: float(v) for k, v in (r.get("metrics") or {}).items()
                               if isinstance(v, (int, float)) and k.split("@")[0] in REPORT_METRICS}
                    rows.append({"model": str(r.get("label") or r.get("model"))[:200], "metrics": metrics,
                                 "fit_seconds": r.get("fit_seconds")})
                modalities = [_worth(w) for w in (data.get("modalities") or [])[:200]]
            except (OSError, ValueError, AttributeError, KeyError, TypeError):
                rows, modalities = [], []
        return {"rows": rows, "plots": self.plots(), "modalities": modalities}

    def plots(self) -> list[str]:
        folder = self.report_dir
        return sorted(p.name for p in folder.glob("*.png") if p.is_file()) if folder and folder.is_dir() else []

    def plot_file(self, name: str) -> Path | None:
        """A plot of the report by its listed name; ``None`` for any other name (no path is built from it)."""
        return self.report_dir / name if name in self.plots() else None  # type: ignore[operator]
