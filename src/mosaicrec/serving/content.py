"""Content reads of the service: similar items and text-to-item search, over a snapshot's content.

Both return :class:`~mosaicrec.ranking.lists.ItemList` values, rendered by the same
:meth:`~mosaicrec.ranking.lists.ItemList.entries` as a user's list. Queries are embedded by the encoder
that made the catalog's content (the model's training record, else the content's own label): text embedded
by another encoder than the catalog's would be compared in another space.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from mosaicrec.errors import MosaicError, NotSupportedError, UnknownItemError
from mosaicrec.fusion import cross_modal_map
from mosaicrec.models.training import TrainingInfo
from mosaicrec.ranking.lists import ItemList
from mosaicrec.ranking.retrieval import top_k
from mosaicrec.ranking.snapshot import ContentView, Snapshot, normalise


class ContentNotReady(MosaicError):
    """The route needs item content that is still being encoded (the API answers 503, retry later)."""


class ContentReads:
    """Similar items and search for a service; keeps the encoders it loaded for queries."""

    MIN_PAIRS = 20  # catalog items having text and another modality before search maps text into it

    def __init__(self, info: Callable[[], TrainingInfo], lock: threading.RLock, exact_below: int = 20_000) -> None:
        self._info, self.lock, self.exact_below = info, lock, exact_below
        self.encoders: dict[str, Any] = {}
        self.status = "none"  # none, encoding (in the background), ready, or failed: <why>

    def require(self, snap: Snapshot, what: str) -> ContentView:
        if snap.content is None:
            if self.status == "encoding":
                raise ContentNotReady(f"{what} needs item content, which is being encoded in the background; "
                                      "retry shortly")
            raise NotSupportedError(f"{what} needs item content; start the server with content "
                                    "(`mosaicrec encode`, or --content)")
        return snap.content

    def similar(self, snap: Snapshot, item_id: str, k: int = 10, modality: str | None = None) -> ItemList:
        """Items most like ``item_id`` by fused content, or by one modality."""
        cat = snap.catalog
        if item_id not in cat.index:
            raise UnknownItemError(f"unknown item {item_id!r}")
        cv = self.require(snap, "similar items")
        if modality is not None and modality not in cv.modality_vectors:
            raise MosaicError(f"no {modality!r} content; available: {', '.join(cv.modality_vectors)}")
        i = cat.index[item_id]
        vec = cv.vectors if modality is None else cv.modality_vectors[modality]
        if modality is not None and not cv.modality_masks[modality][i]:
            return ItemList.empty("similar")
        cand = None
        if modality is None and cv.index is not None and len(cv.stale) < self.exact_below:
            # candidates from the index, plus every row changed since it was built or added after it; all
            # rescored with the current vectors, so a stale row is never ranked by its old vector
            hits, _ = cv.index.search(vec[i][None], min(cv.n_indexed, k + 1 + len(cv.stale)))
            cand = np.unique(np.concatenate([hits[0][hits[0] >= 0], np.fromiter(cv.stale, np.int64, len(cv.stale)),
                                             np.arange(cv.n_indexed, len(vec))]))
        cand = np.arange(len(vec)) if cand is None else cand
        sims = vec[cand] @ vec[i]
        sims[cand == i] = -np.inf
        if modality is not None:
            sims[~cv.modality_masks[modality][cand]] = -np.inf
        top, vals = top_k(sims, k)
        return ItemList(cand[top], vals, policy="similar").finite()

    def search(self, snap: Snapshot, query: str, k: int = 10, user_scores: np.ndarray | None = None) -> ItemList:
        """Items whose content is nearest to a natural-language query.

        Where the catalog also has other modalities (images, audio) with at least ``MIN_PAIRS`` items that
        have text too, the query is also carried into each of those spaces by a linear map fitted on those
        pairs (:func:`~mosaicrec.fusion.cross_modal_map`), so items known only by their image are found as
        well; each modality's similarities are standardised and an item's score is the mean over the
        modalities it has. With text alone the score is the cosine. With a user's scores, ties in meaning
        are broken towards the user's taste: 80% query match, 20% the user's score (both rescaled to
        [0, 1])."""
        if not query.strip():
            raise MosaicError("query is empty")
        cv = self.require(snap, "search")
        if "text" not in cv.modality_vectors:
            raise NotSupportedError("search needs text content (encode with a text encoder)")
        enc = self.encoder("text", cv)
        with self.lock:
            q = normalise(enc.encode([query]))[0]
        maps = self._query_maps(cv)
        text = cv.modality_vectors["text"] @ q
        if not maps:
            sims = np.where(cv.modality_masks["text"], text, -np.inf)
        else:
            total, count = np.zeros(len(text)), np.zeros(len(text))
            per_modality = {"text": text, **{m: cv.modality_vectors[m] @ normalise((q @ W)[None])[0]
                                             for m, W in maps.items()}}
            for m, s in per_modality.items():
                has = cv.modality_masks[m]
                total[has] += (s[has] - s[has].mean()) / max(float(s[has].std()), 1e-6)
                count[has] += 1
            sims = np.where(count > 0, total / np.maximum(count, 1), -np.inf).astype(np.float32)
        if user_scores is not None:
            finite = np.isfinite(user_scores) & np.isfinite(sims)
            both = np.full_like(sims, -np.inf)
            both[finite] = 0.8 * _unit(sims[finite]) + 0.2 * _unit(user_scores[finite])
            sims = both
        top, vals = top_k(sims, k)
        return ItemList(top, vals, policy="search").finite()

    def _query_maps(self, cv: ContentView) -> dict[str, np.ndarray]:
        """Text → other-modality maps, fitted on first use and kept with this content (a dict of the
        immutable content view: two requests filling it at once compute the same maps)."""
        if "_done" not in cv.maps:
            text, has_text = cv.modality_vectors["text"], cv.modality_masks["text"]
            for m, vectors in cv.modality_vectors.items():
                pairs = has_text & cv.modality_masks[m]
                if m != "text" and pairs.sum() >= self.MIN_PAIRS:
                    cv.maps[m] = cross_modal_map(text[pairs], vectors[pairs])
            cv.maps["_done"] = np.zeros(0)
        return {m: W for m, W in cv.maps.items() if m != "_done"}

    def encoder(self, name: str, cv: ContentView | None, parts: bool = False):
        """The encoder that made the content called ``name`` (the model's record, else the content's own
        label), loaded on first use. ``parts``: the served content holds its parts (a video's
        ``<name>_frames`` / ``<name>_sound``), so it must give them too."""
        from mosaicrec.encoders import create_encoder

        if name not in self.encoders:
            spec = self._info().encoders.get(name)
            sources = cv.content.sources if cv is not None else {}
            source = sources.get(name) or next((s.partition("#")[0] for m, s in sources.items()
                                                if m.startswith(name + "_") and "#" in s), "")
            enc_name = spec["name"] if spec else source.split("@")[0]
            if not enc_name:
                raise NotSupportedError(f"no encoder known for {name!r} content")
            enc = create_encoder(enc_name, **(spec.get("params", {}) if spec else {}))
            if source and enc.key != source and not enc.needs_fit:
                raise MosaicError(f"the {name!r} content was made by {source}, but {enc.key} would embed new "
                                  "input: re-encode the catalog or serve with the matching encoder")
            if enc.needs_fit:
                raise NotSupportedError(f"{enc_name} is fitted on the catalog and cannot encode new input; "
                                        "use a pretrained encoder for served content")
            if parts and getattr(enc.config, "content", None) == "fused":
                enc.config = enc.config.model_copy(update={"content": "both"})
            self.encoders[name] = enc
        return self.encoders[name]


def _unit(x: np.ndarray) -> np.ndarray:
    span = float(x.max() - x.min()) if len(x) else 0.0
    return (x - x.min()) / span if span > 0 else np.ones_like(x)
