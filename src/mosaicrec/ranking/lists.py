"""Top-k lists for one user by external id, with titles."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mosaicrec.errors import UnknownUserError
from mosaicrec.models.base import BaseRecommender


@dataclass(frozen=True)
class Recommendation:
    rank: int
    item_id: str
    title: str
    score: float


def recommend_for_user(model: BaseRecommender, user_id: str, k: int = 10, *,
                       items: pd.DataFrame | None = None, exclude_seen: bool = True,
                       context: str | None = None) -> list[Recommendation]:
    """The top-``k`` items for ``user_id`` (an external id known to the model), with titles from ``items``
    (a catalog frame with ``item_id`` and ``title``) when given, in ``context`` for a context model."""
    lookup = {str(u): i for i, u in enumerate(model.user_ids)}
    if str(user_id) not in lookup:
        sample = ", ".join(map(str, model.user_ids[:5]))
        raise UnknownUserError(f"unknown user id {user_id!r}: the model knows {len(lookup)} users "
                               f"(e.g. {sample})")
    if context is not None:
        model.knows_context(context)  # a context-free model refuses to rank "in" a context
    ids, scores = model.recommend(np.array([lookup[str(user_id)]]), k=k, exclude_seen=exclude_seen,
                                  context=context)
    titles = {}
    if items is not None:
        titles = dict(zip(items["item_id"].astype(str), items["title"].fillna("")))
    out = []
    for rank, (i, s) in enumerate(zip(ids[0], scores[0]), start=1):
        if i < 0:
            break
        item_id = str(model.item_ids[i])
        out.append(Recommendation(rank, item_id, titles.get(item_id) or item_id, float(s)))
    return out
