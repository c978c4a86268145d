"""Item content as plain arrays: the value the encode stage hands to fusion and models.

One float32 matrix per modality (``n_items × dim``, row ``i`` describes ``item_ids[i]``) plus a boolean mask
of which items have that modality. Items without it keep a zero row, so every matrix indexes the same
catalog as :class:`~mosaicrec.data.schema.Interactions` and models never look ids up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mosaicrec.errors import MosaicError, UnknownItemError

if TYPE_CHECKING:
    import pandas as pd
    import scipy.sparse as sp


@dataclass(frozen=True)
class ItemContent:
    """Per-modality item embeddings over one catalog."""

    item_ids: np.ndarray
    features: dict[str, np.ndarray] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        for name, mat in self.features.items():
            if mat.shape[0] != n or self.masks[name].shape != (n,):
                raise ValueError(f"modality {name!r}: {mat.shape[0]} rows for {n} items")

    @property
    def modalities(self) -> list[str]:
        return list(self.features)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def dim(self, modality: str) -> int:
        return int(self._get(modality).shape[1])

    def _get(self, modality: str) -> np.ndarray:
        if modality not in self.features:
            raise MosaicError(f"no {modality!r} embeddings; this content has {', '.join(self.features) or 'none'}")
        return self.features[modality]

    def index_of(self, item_id: str) -> int:
        hits = np.flatnonzero(self.item_ids == str(item_id))
        if not len(hits):
            raise UnknownItemError(f"unknown item {item_id!r}")
        return int(hits[0])

    def align(self, item_ids: np.ndarray) -> ItemContent:
        """The same content re-indexed to another catalog order; items it lacks get an empty row."""
        pos = {str(i): k for k, i in enumerate(self.item_ids)}
        src = np.array([pos.get(str(i), -1) for i in item_ids], dtype=np.int64)
        have = src >= 0
        feats, masks = {}, {}
        for name, mat in self.features.items():
            out = np.zeros((len(item_ids), mat.shape[1]), np.float32)
            out[have] = mat[src[have]]
            feats[name] = out
            masks[name] = np.zeros(len(item_ids), bool)
            masks[name][have] = self.masks[name][src[have]]
        return ItemContent(np.asarray(item_ids, dtype=object), feats, masks, dict(self.sources))

    def nearest(self, modality: str, item: int, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items most similar to item index ``item`` by cosine (items without the modality are
        never returned, nor is the item itself)."""
        mat, mask = self._get(modality), self.masks[modality]
        if not mask[item]:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        norms = np.linalg.norm(mat, axis=1)
        sims = mat @ mat[item] / np.maximum(norms * norms[item], 1e-12)
        sims[~mask] = -np.inf
        sims[item] = -np.inf
        k = min(k, int(mask.sum()) - 1)
        top = np.argpartition(-sims, k)[:k] if k < len(sims) else np.arange(len(sims))
        top = top[np.argsort(-sims[top], kind="stable")]
        return top, sims[top].astype(np.float32)

    def save(self, path: str | Path) -> None:
        """Write one ``.npz`` file (arrays) with the sources in its metadata entry."""
        arrays = {"item_ids": np.asarray(self.item_ids, dtype=str)}
        for name in self.features:
            arrays[f"features/{name}"] = self.features[name]
            arrays[f"masks/{name}"] = self.masks[name]
        arrays["meta"] = np.array(json.dumps({"sources": self.sources}))
        np.savez(Path(path), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> ItemContent:
        with np.load(Path(path), allow_pickle=False) as z:
            names = [k.split("/", 1)[1] for k in z.files if k.startswith("features/")]
            meta = json.loads(str(z["meta"]))
            return cls(z["item_ids"].astype(object), {n: z[f"features/{n}"] for n in names},
                       {n: z[f"masks/{n}"] for n in names}, meta["sources"])


def profile_texts(users: "pd.DataFrame", user_ids: np.ndarray, items: "pd.DataFrame", item_ids: np.ndarray,
                  history: "sp.csr_matrix", max_items: int = 20) -> list[str]:
    """One text per user (row ``u`` of ``history`` is user ``user_ids[u]``): the user's attributes and the
    titles of up to ``max_items`` of their items, e.g. ``"occupation: writer. gender: F. age: 31. Liked:
    Fargo (1996); Heat (1995)"``. Embedded with a text encoder, this is the profile h_u = M(text_u) that
    lets a model place a user it has never trained on (attributes only when ``history`` is empty)."""
    attrs = dict(zip(users["user_id"].astype(str), users["attributes"])) if len(users) else {}
    titles = dict(zip(items["item_id"].astype(str), items["title"].fillna("")))
    out = []
    for u, uid in enumerate(user_ids):
        parts = [f"{k}: {v}" for k, v in sorted((attrs.get(str(uid)) or {}).items())
                 if v is not None and k != "zip_code"]
        row = history.indices[history.indptr[u]:history.indptr[u + 1]][:max_items]
        liked = "; ".join(t for t in (titles.get(str(item_ids[i]), "") for i in row) if t)
        if liked:
            parts.append(f"Liked: {liked}")
        out.append(". ".join(parts))
    return out
