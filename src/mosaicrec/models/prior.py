"""A popularity prior for users known by a few events (new users), for the item-to-item models.

z(scores) + β·z(log(1 + count_i)), z standardising each row. A user known by three events is mostly
unknown, and what most users liked is the best guess for the rest: the prior carries that, the events move
away from it (a user with no events gets the popularity ranking). β is chosen on pseudo-new users of the
validation part. (Counting the popularity over the training users with the closest profile embeddings
instead was measured and dropped: on ml100k-multimodal it lowered new-user NDCG@10 from 0.382 to 0.378
with 800 neighbours and to 0.259 with 50.)
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field


class PriorConfig(BaseModel):
    history_popularity: float = Field(0.0, ge=0.0, description="new users: weight β of a popularity prior "
                                      "blended into the scores of their few events (0: none)")


def _z(x: np.ndarray) -> np.ndarray:
    mean, std = x.mean(axis=-1, keepdims=True), x.std(axis=-1, keepdims=True)
    return np.divide(x - mean, std, out=np.zeros_like(x), where=std > 1e-12)


class PopularityPrior:
    """Mixin for models with a ``_seen`` matrix whose config extends :class:`PriorConfig`."""

    def _prior(self, scores: np.ndarray) -> np.ndarray:
        beta = float(getattr(self.config, "history_popularity", 0.0))
        scores = np.asarray(scores, np.float32)
        if beta <= 0 or scores.size == 0:
            return scores
        hit = self.__dict__.get("_pop_prior")
        if hit is None or hit[0] is not self._seen:
            pop = np.log1p(np.asarray(self._seen.sum(axis=0), np.float32))
            hit = self._pop_prior = (self._seen, _z(pop))
        return (_z(scores) + np.float32(beta) * hit[1]).astype(np.float32)
