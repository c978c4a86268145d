"""Full-ranking evaluation: every model ranks the whole catalog for each test user, with the user's
training items excluded, and the top-K lists are scored against the held-out relevant items."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from mosaicrec.data.schema import Interactions
from mosaicrec.evaluation import metrics as M
from mosaicrec.models.base import BaseRecommender, mask_rows, top_k

BEYOND_ACCURACY = ("coverage", "novelty", "diversity")


class EvaluationConfig(BaseModel):
    """What to measure (the ``[evaluation]`` section of a config file)."""

    model_config = ConfigDict(extra="forbid")

    ks: list[int] = Field(default_factory=lambda: [5, 10, 20])
    metrics: list[str] = Field(default_factory=lambda: ["precision", "recall", "ndcg", "map", "mrr", "hitrate",
                                                        "coverage", "novelty", "diversity"])
    batch_size: int = Field(1024, ge=1)
    mmr_lambdas: list[float] = Field(default_factory=list, description="MMR λ values for the accuracy/"
                                     "diversity trade-off curve over fused content (empty: none)")

    def model_post_init(self, __context: object) -> None:
        unknown = [m for m in self.metrics if m not in M.ACCURACY_METRICS and m not in BEYOND_ACCURACY]
        if unknown:
            known = ", ".join([*M.ACCURACY_METRICS, *BEYOND_ACCURACY])
            raise ValueError(f"unknown metric {unknown[0]!r}; known: {known}")
        if not self.ks or min(self.ks) < 1:
            raise ValueError("ks must list cut-offs ≥ 1")


@dataclass
class RankingResult:
    """Mean metrics (``"ndcg@10"`` → value), per-user values, and which users were evaluated."""

    metrics: dict[str, float]
    users: np.ndarray
    per_user: dict[str, np.ndarray] = field(default_factory=dict)
    top: np.ndarray | None = None


def evaluate_ranking(model: BaseRecommender, test: Interactions, *, exclude: sp.csr_matrix,
                     config: EvaluationConfig | None = None, item_popularity: np.ndarray | None = None,
                     item_vectors: np.ndarray | sp.spmatrix | None = None,
                     users: Sequence[int] | None = None, candidates: np.ndarray | None = None,
                     score_fn: Callable[[np.ndarray], np.ndarray] | None = None) -> RankingResult:
    """Evaluate ``model`` on ``test`` (every test event is relevant; convert ratings first).

    ``exclude`` marks items never to count (the user's training items). Users evaluated: those with at
    least one relevant test item and at least one excluded (training) item, unless ``users`` is given.
    ``item_popularity`` (share of training users per item) enables novelty; ``item_vectors`` (e.g. genre
    multi-hot) enables intra-list diversity, else training co-occurrence columns are used.
    ``candidates`` (item indices) restricts the ranking to those items, e.g. the held-out new items;
    ``score_fn`` (user indices → score rows) replaces ``model.score``, e.g. to fold in new users.
    """
    cfg = config or EvaluationConfig()
    relevant = test.binary
    n_rel_all = np.diff(relevant.indptr)
    users = _default_users(relevant, exclude) if users is None else np.asarray(users, dtype=np.int64)
    kmax = max(cfg.ks)
    score_fn = score_fn or model.score
    blocked = None
    if candidates is not None:
        blocked = np.ones(relevant.shape[1], bool)
        blocked[np.asarray(candidates)] = False
    tops, hits_all = [], []
    for start in range(0, len(users), cfg.batch_size):
        block = users[start:start + cfg.batch_size]
        scores = np.array(score_fn(block), dtype=np.float32, copy=True)
        mask_rows(scores, exclude[block])
        if blocked is not None:
            scores[:, blocked] = -np.inf
        top, top_scores = top_k(scores, kmax)
        top = np.where(np.isfinite(top_scores), top, -1)
        hits = _hits(relevant[block], top)
        tops.append(top)
        hits_all.append(hits)
    top = np.concatenate(tops) if tops else np.empty((0, kmax), np.int64)
    hits = np.concatenate(hits_all) if hits_all else np.empty((0, kmax), bool)
    n_rel = n_rel_all[users]

    out: dict[str, float] = {}
    per_user: dict[str, np.ndarray] = {}
    for name in cfg.metrics:
        if name not in M.ACCURACY_METRICS:
            continue
        for k in cfg.ks:
            values = M.ACCURACY_METRICS[name](hits, n_rel, k)
            per_user[f"{name}@{k}"] = values
            out[f"{name}@{k}"] = float(values.mean()) if len(values) else 0.0
    for k in cfg.ks:
        if "coverage" in cfg.metrics:
            out[f"coverage@{k}"] = M.coverage(top[:, :k], relevant.shape[1])
        if "novelty" in cfg.metrics and item_popularity is not None:
            out[f"novelty@{k}"] = M.novelty(top[:, :k], item_popularity)
        if "diversity" in cfg.metrics:
            vectors = item_vectors if item_vectors is not None else exclude.T.tocsr()
            out[f"diversity@{k}"] = M.intra_list_diversity(top[:, :k], vectors)
    return RankingResult(metrics=out, users=users, per_user=per_user, top=top)


def evaluate_ratings(model: BaseRecommender, test: Interactions) -> dict[str, float]:
    """RMSE and MAE of predicted against held-out ratings."""
    pred = model.predict(test.users, test.items)
    return {"rmse": M.rmse(pred, test.weights), "mae": M.mae(pred, test.weights)}


def item_popularity(train: Interactions) -> np.ndarray:
    """Share of training users who interacted with each item, floored at one user (for novelty)."""
    counts = np.asarray(train.binary.sum(axis=0)).ravel()
    return np.maximum(counts, 1) / max(1, train.n_users)


def diversity_tradeoff(model: BaseRecommender, test: Interactions, *, exclude: sp.csr_matrix,
                       vectors: np.ndarray, lambdas: Sequence[float], k: int = 10, pool: int = 50,
                       diversity_vectors: np.ndarray | sp.spmatrix | None = None) -> list[dict[str, float]]:
    """NDCG@k and intra-list diversity@k of the model's lists re-ranked by MMR at each λ (1 = no
    re-ranking): each user's top-``pool`` is re-ranked over ``vectors`` (fused, normalised content).
    Diversity is measured on ``diversity_vectors`` (e.g. genres) when given, else on ``vectors``."""
    from mosaicrec.ranking.rerank import mmr

    relevant = test.binary
    n_rel = np.diff(relevant.indptr)
    users = _default_users(relevant, exclude)
    rel_users = relevant[users]
    scores = np.array(model.score(users), dtype=np.float32, copy=True)
    mask_rows(scores, exclude[users])
    top, top_scores = top_k(scores, pool)
    out = []
    for lam in lambdas:
        lists = np.full((len(users), k), -1, np.int64)
        for r in range(len(users)):
            keep = np.isfinite(top_scores[r])
            chosen = mmr(top[r][keep], top_scores[r][keep], vectors, k, float(lam))
            lists[r, :len(chosen)] = chosen
        hits = _hits(rel_users, lists)
        out.append({"lambda": float(lam), f"ndcg@{k}": float(M.ndcg(hits, n_rel[users], k).mean()),
                    f"diversity@{k}": M.intra_list_diversity(lists, diversity_vectors if diversity_vectors
                                                             is not None else vectors)})
    return out


def _default_users(relevant: sp.csr_matrix, exclude: sp.csr_matrix) -> np.ndarray:
    """Users with at least one relevant test item and at least one training item."""
    return np.flatnonzero((np.diff(relevant.indptr) > 0) & (np.diff(exclude.indptr) > 0)).astype(np.int64)


def _hits(relevant_rows: sp.csr_matrix, top: np.ndarray) -> np.ndarray:
    """Whether each listed item (``-1``: an empty slot) is relevant, row by row."""
    rel = relevant_rows.toarray() > 0
    return np.take_along_axis(rel, np.maximum(top, 0), axis=1) & (top >= 0)
