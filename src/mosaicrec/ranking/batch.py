"""Many users' lists at once: the batch form of the one :class:`~mosaicrec.ranking.pipeline.Pipeline` for
plain top-k lists (no filters, diversity, exploration or reasons), which ``mosaicrec export`` and offline
evaluation need for every user.

A trained user whose live events the model has seen (the pipeline would serve their model row) is ranked
with a block of such users: the block's query rows times every catalog row in one matrix product (items
added since training through their content proxies, as the pipeline scores them), the user's rules (likes
and dislikes never come back) and the items that cannot be placed set to ``-inf`` through one sparse mask,
then each row's top ``k`` by a one-pass selection. Every other user (folded in from live likes, erased and
back, or with nothing to go on) goes through :meth:`Pipeline.run` itself. Both give the same list; the
scores of a block product may differ from one user's matrix-vector product in the last bit of float32,
since BLAS adds in another order, so two items whose scores tie to that bit may swap.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from mosaicrec.models.base import mask_rows, top_k
from mosaicrec.models.query import Query
from mosaicrec.ranking.personal import on_catalog
from mosaicrec.ranking.pipeline import Pipeline, Request
from mosaicrec.ranking.snapshot import Snapshot

#: scores one block holds at most (float32): 16M is 64 MB, 9,500 users of ML-100K's 1,682 items at once
BLOCK_SCORES = 16_000_000


@dataclass(frozen=True)
class Lists:
    """Each user's list: catalog rows best first (``-1`` past the end of a short list), their scores
    (``-inf`` there) and whether the user was served the popular items (``cold_start``)."""

    users: list[str]
    items: np.ndarray
    scores: np.ndarray
    cold: np.ndarray

    def lengths(self) -> np.ndarray:
        return (self.items >= 0).sum(axis=1)


def top_masked(scores: np.ndarray, exclude: sp.csr_matrix | None, k: int, blocked: np.ndarray | None = None,
               tie_rank: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` best entries of ``scores`` (changed in place) after ``-inf`` at the row's
    ``exclude`` entries and at the ``blocked`` columns: indices best first (ties: lower index first, or lower
    ``tie_rank``), ``-1`` where fewer than ``k`` finite scores remain, and the scores."""
    if exclude is not None and exclude.nnz:
        mask_rows(scores, exclude)
    if blocked is not None:
        scores[:, blocked] = -np.inf
    top, vals = top_k(scores, k, tie_rank)
    return np.where(np.isfinite(vals), top, -1), vals


def batch_lists(pipeline: Pipeline, snap: Snapshot, users: Sequence[str], k: int, scenario: str | None = None,
                block_scores: int = BLOCK_SCORES, threads: int = 1) -> Lists:
    """The top ``k`` of each of ``users`` (exclude_seen, no reasons), as :meth:`Pipeline.run` gives them.
    ``threads``: blocks ranked at once (a factor model's products and top-k; each product on one BLAS thread,
    so the scores do not depend on the number)."""
    users = [str(u) for u in users]
    n, n_cat = len(users), len(snap.catalog)
    items = np.full((n, k), -1, np.int64)
    scores = np.full((n, k), -np.inf, np.float32)
    cold = np.zeros(n, bool)
    fast, rows = _trained(pipeline, snap, users)
    unplaced = _unplaced(snap)
    # blocks of at most block_scores scores, and at least one per thread
    step = max(1, min(block_scores // max(n_cat, 1), -(-len(fast) // max(1, threads))))

    def rank(at: np.ndarray, block: np.ndarray, exclude: sp.csr_matrix) -> None:
        top, vals = top_masked(_scored(snap, block), exclude, k, unplaced)
        items[at, :top.shape[1]], scores[at, :top.shape[1]] = top, vals

    with ThreadPoolExecutor(max(1, threads)) as pool:
        running: list[Future] = []
        for start in range(0, len(fast), step):
            at = fast[start:start + step]
            # model calls stay on this thread: a numba kernel must not be entered from two at once
            block = _block_queries(snap, rows[start:start + step], scenario)
            exclude = pipeline.live.exclusions([users[i] for i in at], snap.catalog.ids, snap.catalog.index)
            running.append(pool.submit(rank, at, block, exclude))
            if len(running) >= 2 * max(1, threads):  # a bounded number of blocks in memory
                running.pop(0).result()
        for job in running:
            job.result()
    slow = np.setdiff1d(np.arange(n), fast)
    for i in slow:  # fold-ins and cold starts: the pipeline itself, one user at a time
        got = pipeline.run(snap, Request(users[i], k, scenario=scenario, reasons="none"))
        m = len(got.items)
        items[i, :m] = [snap.catalog.index[e.item_id] for e in got.items]
        scores[i, :m] = [e.score for e in got.items]
        cold[i] = got.cold_start
    return Lists(users, items, scores, cold)


def _trained(pipeline: Pipeline, snap: Snapshot, users: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Positions (in ``users``) of the users the pipeline serves from their model row (one it may serve,
    and whose live events it has seen), and those rows."""
    live, trained_row = pipeline.live, pipeline.scorer.trained_row
    at, rows = [], []
    for i, u in enumerate(users):
        row = trained_row(snap, live, u)
        if row is not None and u not in live.changed:
            at.append(i)
            rows.append(row)
    return np.asarray(at, np.int64), np.asarray(rows, np.int64)


def _unplaced(snap: Snapshot) -> np.ndarray | None:
    """Catalog rows added since training with no content to place them by (never ranked)."""
    if len(snap.catalog) <= snap.n_model:
        return None
    return snap.n_model + np.flatnonzero(~snap.proxies.placed)


def _block_queries(snap: Snapshot, rows: np.ndarray, scenario: str | None) -> np.ndarray:
    """What the model gives for trained users' ``rows``: a factor model's queries ``[q, 1]``, any other
    model's scores of its items (as :mod:`~mosaicrec.ranking.personal` asks for them one user at a time)."""
    view = snap.view
    model, query = view.model, Query(users=rows, context=scenario)
    if view.rows is not None:
        q = model.query_factors(query).astype(np.float32)
        return np.hstack([q, np.ones((len(q), 1), np.float32)])
    return np.asarray(model.score(query), np.float32)


def _scored(snap: Snapshot, block: np.ndarray) -> np.ndarray:
    """Scores of every catalog item from :func:`_block_queries`' block (float32, a fresh array): items added
    since training through their content proxies, ``-inf`` where they have none."""
    if snap.view.rows is not None:
        all_rows = snap.rows_all if snap.rows_all is not None else snap.view.rows
        return np.ascontiguousarray(block @ all_rows.T)
    return on_catalog(snap, block)
