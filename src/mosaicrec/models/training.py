"""Training on a whole :class:`~mosaicrec.data.Dataset` (what ``mosaicrec train`` runs), and the record of
how a saved model was trained (``training.json`` beside it), which serving reads back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mosaicrec.data.content import ItemContent
from mosaicrec.data.likes import positive
from mosaicrec.data.schema import Dataset
from mosaicrec.data.splits import to_implicit
from mosaicrec.models.base import BaseRecommender
from mosaicrec.models.registry import create

INFO_FILE = "training.json"
CONTENT_FILE = "content.npz"


class TrainingInfo(BaseModel):
    """How a saved model was trained: what serving needs to treat live events and content the same way.

    ``threshold``: events with weight ≥ it were the positives (``None``: every event with a weight above 0).
    ``data_as_of``: when the training events were read (Unix s): a user erased at or after it is in the
    model's rows and must never be served from them. ``encoders``: content name → ``{"name", "params",
    "key"}`` of the encoder that made it; serving embeds new items and queries with the same ones."""

    model_config = ConfigDict(extra="ignore")

    dataset: str = "unknown"
    store: str | None = None
    threshold: float | None = None
    data_as_of: float | None = None
    encoders: dict[str, dict[str, Any]] = Field(default_factory=dict)
    text_fields: list[str] | None = None
    #: content name → its own text fields (``mosaicrec train --field crew=director,cast``)
    fields: dict[str, list[str]] = Field(default_factory=dict)

    def save(self, folder: str | Path) -> None:
        (Path(folder) / INFO_FILE).write_text(self.model_dump_json(indent=2))

    @classmethod
    def load(cls, folder: str | Path) -> TrainingInfo:
        """The model folder's record; a folder from before it was kept (``source.json``) gives what that
        said, with no threshold, encoders or time known."""
        folder = Path(folder)
        if (folder / INFO_FILE).is_file():
            return cls.model_validate_json((folder / INFO_FILE).read_text())
        if (folder / "source.json").is_file():
            return cls(**json.loads((folder / "source.json").read_text()))
        return cls()

    def is_positive(self, weights: np.ndarray) -> np.ndarray:
        return positive(weights, self.threshold)


def default_threshold(dataset: Dataset) -> float | None:
    """Positives for implicit models by the dataset's declared like rule (ratings in the top quarter of
    their scale: 4 and 5 on 1–5); ``None`` (every event with a positive weight) without one, unless the
    weights look like ratings (refused: :func:`~mosaicrec.data.likes.like_threshold`)."""
    return dataset.like_threshold()


def fit_on_dataset(dataset: Dataset, name: str, params: dict[str, Any] | None = None,
                   threshold: float | None = None, content: ItemContent | None = None,
                   on_epoch=None) -> BaseRecommender:
    """Fit a registered model on all events: rating models on the ratings, impression models
    (``trains_on_impressions``) on every impression with its outcome columns, the others on the positives
    (:func:`positive`); ``content`` goes to models that read it; ``on_epoch`` sees each epoch's record."""
    model = create(name, params)
    model.on_epoch = on_epoch
    events = dataset.interactions
    if not model.predicts_ratings and not model.trains_on_impressions:
        threshold = threshold if threshold is not None else default_threshold(dataset)
        if threshold is not None:
            events = to_implicit(events, threshold)
        elif (events.weights <= 0).any():
            events = events.subset(events.weights > 0)
    try:
        return model.fit(events, content=content)
    finally:
        model.on_epoch = None


def save_trained(model: BaseRecommender, folder: str | Path, info: TrainingInfo,
                 content: ItemContent | None = None) -> None:
    """Save a model with its training record, and the content it was fitted on (so serving starts without
    encoding anything)."""
    folder = Path(folder)
    model.save(folder)
    info.save(folder)
    if content is not None:
        content.save(folder / CONTENT_FILE)

