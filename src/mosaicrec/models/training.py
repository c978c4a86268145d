"""Training on a whole :class:`~mosaicrec.data.Dataset` (what ``mosaicrec train`` runs)."""

from __future__ import annotations

from typing import Any

from mosaicrec.data.content import ItemContent
from mosaicrec.data.schema import Dataset
from mosaicrec.data.splits import to_implicit
from mosaicrec.models.base import BaseRecommender, create


def default_threshold(dataset: Dataset) -> float | None:
    """Positives for implicit models: ratings in the top quarter of the scale (4 and 5 on 1–5);
    ``None`` (every event is positive) when the events carry no rating scale."""
    if dataset.rating_scale is None:
        return None
    lo, hi = dataset.rating_scale
    return lo + 0.75 * (hi - lo)


def fit_on_dataset(dataset: Dataset, name: str, params: dict[str, Any] | None = None,
                   threshold: float | None = None, content: ItemContent | None = None) -> BaseRecommender:
    """Fit a registered model on all events: rating models on the ratings, the others on the positives;
    ``content`` goes to models that read it."""
    model = create(name, params)
    events = dataset.interactions
    if not model.predicts_ratings:
        events = to_implicit(events, threshold if threshold is not None else default_threshold(dataset))
    return model.fit(events, content=content)
