"""Most-popular baseline: every user gets the items most users interacted with."""

from __future__ import annotations

import numpy as np

from mosaicrec.data.schema import Interactions
from mosaicrec.models.query import Query
from mosaicrec.models.base import BaseRecommender, ModelConfig
from mosaicrec.models.registry import register


class MostPopularConfig(ModelConfig):
    """No hyper-parameters."""


@register("mostpop")
class MostPopular(BaseRecommender):
    """Scores an item by the number of distinct users who interacted with it in training."""

    Config = MostPopularConfig

    def _fit(self, train: Interactions) -> None:
        self.counts_ = np.asarray(train.binary.sum(axis=0)).ravel().astype(np.float32)

    def _scores(self, query: Query) -> np.ndarray:
        return np.broadcast_to(self.counts_, (len(query), len(self.counts_))).copy()

    def _state(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts_}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.counts_ = state["counts"]
