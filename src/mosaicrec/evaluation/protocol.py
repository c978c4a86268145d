"""Full-ranking evaluation: every model ranks the whole catalog for each test user, with the user's
training items excluded, and the top-K lists are scored against the held-out relevant items."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from mosaicrec.data.schema import Interactions
from mosaicrec.errors import ConfigError
from mosaicrec.evaluation import metrics as M
from mosaicrec.models.base import BaseRecommender
from mosaicrec.models.query import Query
from mosaicrec.ranking.batch import top_masked

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
    sparse_users: int = Field(0, ge=0, description="also report the warm metrics over users with at most "
                              "this many training positives (0: no such slice)")
    sparse_items: int = Field(0, ge=0, description="also report the warm metrics with only test items that "
                              "have at most this many training positives as relevant (0: no such slice)")
    context: str | None = Field(None, description="an event-context column (e.g. scenario): rank once per "
                                "(user, value) with that value as the request's context, score the list "
                                "against the user's test items in that context, and report each value apart")

    sample_lists: int = Field(0, ge=0, description="rank only a seeded sample of this many lists (users, or "
                              "user × context) of the full-catalogue ranking, the same for every model: for "
                              "models that score each (user, item) pair with a network; 0: every list")
    workers: int = Field(0, ge=0, le=4096, description="Ray workers ranking shards of the users in parallel "
                         "(the same lists as one process); 0: this process")
    ray_address: str | None = Field(None, description="Ray cluster for workers > 0 [default: "
                                    "$MOSAICREC_RAY_ADDRESS, else a local cluster]")
    labels: list[str] = Field(default_factory=list, max_length=16, description="impression labels: event "
                              "columns (e.g. click, long_view, like) of the test impressions, each scored by AUC, "
                              "GAUC and NDCG@10 over the user's impressed items (per context value too, with "
                              "context); the test part then keeps its non-engaged impressions")

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
    #: with a context: the context value of each ranked list (rows of ``per_user``/``top``), and the mean
    #: metrics of each value (``"1"`` → {"lists": n, "ndcg@10": …})
    contexts: np.ndarray | None = None
    by_context: dict[str, dict[str, float]] = field(default_factory=dict)


def evaluate_ranking(model: BaseRecommender, test: Interactions, *, exclude: sp.csr_matrix,
                     config: EvaluationConfig | None = None, item_popularity: np.ndarray | None = None,
                     item_vectors: np.ndarray | sp.spmatrix | None = None,
                     users: Sequence[int] | None = None, candidates: np.ndarray | None = None,
                     score_fn: Callable[[np.ndarray], np.ndarray] | None = None,
                     context: str | None = None) -> RankingResult:
    """Evaluate ``model`` on ``test`` (every test event is relevant; convert ratings first).

    ``exclude`` marks items never to count (the user's training items). Users evaluated: those with at
    least one relevant test item and at least one excluded (training) item, unless ``users`` is given.
    ``item_popularity`` (share of training users per item) enables novelty; ``item_vectors`` (e.g. genre
    multi-hot) enables intra-list diversity, else training co-occurrence columns are used.
    ``candidates`` (item indices) restricts the ranking to those items, e.g. the held-out new items;
    ``score_fn`` (user indices → score rows) replaces ``model.score``, e.g. to fold in new users.
    ``context`` (an event-context column of ``test``) ranks once per (user, context value) present in
    ``test``, with the value passed to the model: a list is then one user in one context, relevant items
    are the user's test items in that context, and ``users`` must be left out.
    """
    cfg = config or EvaluationConfig()
    list_values = None
    if context is not None:
        if users is not None or score_fn is not None:
            raise ValueError("evaluate_ranking: context ranking picks its own lists; pass neither users "
                             "nor score_fn")
        relevant, list_users, list_values = _context_lists(test, context)
        users = np.flatnonzero(np.diff(exclude[list_users].indptr) > 0).astype(np.int64)
        list_values = list_values[users]
        user_of = list_users[users]
        exclude = exclude[list_users]
        value_of = np.empty(len(list_users), object)
        value_of[users] = list_values

        def score_fn(rows: np.ndarray) -> np.ndarray:
            return model.score(list_users[rows], context=value_of[rows])
    else:
        relevant = test.binary
        users = _default_users(relevant, exclude) if users is None else np.asarray(users, dtype=np.int64)
        user_of = users
    if cfg.sample_lists and len(users) > cfg.sample_lists:
        # the same seeded sample of rows for every model, so comparisons stay paired
        keep = np.sort(np.random.default_rng(0).choice(len(users), cfg.sample_lists, replace=False))
        users, user_of = users[keep], user_of[keep]
        if list_values is not None:
            list_values = list_values[keep]
    n_rel_all = np.diff(relevant.indptr)
    kmax = max(cfg.ks)
    score_fn = score_fn or model.score
    blocked = None
    if candidates is not None:
        blocked = np.ones(relevant.shape[1], bool)
        blocked[np.asarray(candidates)] = False
    if cfg.workers and len(users):
        top, hits = _rank_on_ray(score_fn, users, exclude, relevant, blocked, kmax, cfg)
    else:
        top, hits = _rank(score_fn, users, exclude[users], relevant[users], blocked, kmax, cfg.batch_size)
    out, per_user = _metrics(cfg, hits, n_rel_all[users], top, relevant.shape[1], item_popularity,
                             item_vectors if item_vectors is not None else exclude.T.tocsr())
    by_context = {}
    if list_values is not None:
        for value in sorted(set(list_values), key=lambda v: (-np.count_nonzero(list_values == v), v)):
            sel = list_values == value
            by_context[str(value)] = {"lists": int(sel.sum()), **{k: float(v[sel].mean()) for k, v in per_user.items()}}
    return RankingResult(metrics=out, users=user_of, per_user=per_user, top=top, contexts=list_values,
                         by_context=by_context)


def evaluate_ratings(model: BaseRecommender, test: Interactions) -> dict[str, float]:
    """RMSE and MAE of predicted against held-out ratings."""
    pred = model.score(Query(users=test.users, items=test.items))
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
    top, top_scores = top_masked(scores, exclude[users], pool, tie_rank=tie_order(scores.shape[1]))
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


def _metrics(cfg: EvaluationConfig, hits: np.ndarray, n_rel: np.ndarray, top: np.ndarray, n_items: int,
             item_popularity: np.ndarray | None, vectors) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The configured accuracy metrics (mean, and per list) and beyond-accuracy ones at every cut-off."""
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
            out[f"coverage@{k}"] = M.coverage(top[:, :k], n_items)
        if "novelty" in cfg.metrics and item_popularity is not None:
            out[f"novelty@{k}"] = M.novelty(top[:, :k], item_popularity)
        if "diversity" in cfg.metrics:
            out[f"diversity@{k}"] = M.intra_list_diversity(top[:, :k], vectors)
    return out, per_user


def _context_lists(test: Interactions, context: str) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """One row per (user, context value) in ``test``: its relevant items, its user and its value."""
    if context not in test.context:
        have = ", ".join(sorted(test.context)) or "none"
        raise ConfigError(f"evaluation context {context!r} is not an event-context column (these events "
                          f"have: {have})")
    values = np.asarray(test.context[context]).astype(str)
    codes, uniques = pd.factorize(values)
    pair = test.users.astype(np.int64) * len(uniques) + codes
    keys, rows = np.unique(pair, return_inverse=True)
    relevant = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, test.items)),
                             shape=(len(keys), test.n_items))
    relevant.sum_duplicates()
    return relevant, keys // len(uniques), np.asarray(uniques, dtype=object)[keys % len(uniques)]


def tie_order(n_items: int) -> np.ndarray:
    """The order in which evaluation breaks equal scores: a fixed random permutation of the items (the
    same in every process, so Ray shards agree). Serving breaks ties by item index, which in an offline
    run would reward a model that cannot tell items apart for the catalog's order (MostPop on new items,
    all tied at zero, scored 0.036 NDCG@10 on MovieLens-100K's new films by index order, measured)."""
    return np.random.default_rng(20_261_207).permutation(n_items)


def _rank(score_fn: Callable[[np.ndarray], np.ndarray], users: np.ndarray, exclude: sp.csr_matrix,
          relevant: sp.csr_matrix, blocked: np.ndarray | None, kmax: int, batch_size: int
          ) -> tuple[np.ndarray, np.ndarray]:
    """Top ``kmax`` items and their hits for ``users``, whose exclusion and relevance rows are given in the
    same order, a batch at a time."""
    tops, hits_all = [], []
    for start in range(0, len(users), batch_size):
        rows = slice(start, start + batch_size)
        scores = np.array(score_fn(users[rows]), dtype=np.float32, copy=True)
        top, _ = top_masked(scores, exclude[rows], kmax, blocked, tie_order(scores.shape[1]))  # the export's
        tops.append(top)
        hits_all.append(_hits(relevant[rows], top))
    top = np.concatenate(tops) if tops else np.empty((0, kmax), np.int64)
    hits = np.concatenate(hits_all) if hits_all else np.empty((0, kmax), bool)
    return top, hits


def _rank_on_ray(score_fn, users: np.ndarray, exclude: sp.csr_matrix, relevant: sp.csr_matrix,
                 blocked: np.ndarray | None, kmax: int, cfg: EvaluationConfig) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_rank` over contiguous shards of the users on Ray workers; the same lists, in the same order.
    The scorer (the model) goes to the object store once and every task reads it from there."""
    from mosaicrec.data.cluster import ray_session, shards

    with ray_session(cfg.ray_address, cfg.workers) as ray:
        task = ray.remote(num_cpus=1)(_rank_shard)
        fn = ray.put(score_fn)
        parts = shards(len(users), cfg.workers * 2)  # two per worker: a slow shard does not hold up the rest
        out = ray.get([task.remote(fn, users[a:b], exclude[users[a:b]], relevant[users[a:b]], blocked, kmax,
                                   cfg.batch_size) for a, b in parts])
    return np.concatenate([t for t, _ in out]), np.concatenate([h for _, h in out])


def _rank_shard(score_fn, users, exclude, relevant, blocked, kmax, batch_size):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # one core per task: the cluster schedules by CPU
        return _rank(score_fn, users, exclude, relevant, blocked, kmax, batch_size)


def _default_users(relevant: sp.csr_matrix, exclude: sp.csr_matrix) -> np.ndarray:
    """Users with at least one relevant test item and at least one training item."""
    return np.flatnonzero((np.diff(relevant.indptr) > 0) & (np.diff(exclude.indptr) > 0)).astype(np.int64)


def _hits(relevant_rows: sp.csr_matrix, top: np.ndarray) -> np.ndarray:
    """Whether each listed item (``-1``: an empty slot) is relevant, row by row."""
    rel = relevant_rows.toarray() > 0
    return np.take_along_axis(rel, np.maximum(top, 0), axis=1) & (top >= 0)
