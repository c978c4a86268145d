"""Data-parallel training of ALS and BPR on Ray workers (``workers = N`` in either model's params).

**ALS: alternating solves sharded by rows.** Each worker holds a contiguous slice of the users (their CSR
rows and factor rows) and a slice of the items. A half-step broadcasts the other side's factors and Gram
matrix once (Ray's object store: one copy per node, read without copying) and every worker runs the same
conjugate-gradient kernel as the single-process fit on its rows. Rows are independent in ALS, so this is
the same computation as one process, split: the factors agree to float rounding (tested), and what
scales is the solve, while each half-step's broadcast and gather grow with the factor matrices. This was
chosen over "implicit per shard" (one model per shard of events, then merged), which changes the model.

**BPR: parameter mixing.** Each worker runs the BPR SGD kernel over its users' events, on its own user
rows and a copy of the item factors and biases; ``syncs`` times an epoch the driver adds up the workers'
changes to the item side and broadcasts the result (the sum, not the mean, so one epoch moves the items as
far as one process's epoch does). The result is not the single-process model (samples see item factors up
to 1/syncs of an epoch stale); its accuracy is tested against it.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from mosaicrec.data.cluster import cpus_each, ray_session, shards
from mosaicrec.models import _kernels


def _rows(X: sp.csr_matrix, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    start, stop = X.indptr[lo], X.indptr[hi]
    return (X.indptr[lo:hi + 1] - start).astype(X.indptr.dtype), X.indices[start:stop], X.data[start:stop]


class _ALSShard:
    """One worker's rows: a slice of users and a slice of items, with their CSR rows and factor rows."""

    def __init__(self, users: tuple, items: tuple, U: np.ndarray, V: np.ndarray, cg_steps: int) -> None:
        _kernels.set_threads(1)  # one core per worker: the cluster schedules by CPU
        self.users, self.items = users, items
        self.U, self.V = np.array(U), np.array(V)  # own, writable copies of this shard's rows
        self.cg_steps = cg_steps

    def solve(self, side: str, other: np.ndarray, gram: np.ndarray) -> np.ndarray:
        indptr, indices, conf = self.users if side == "users" else self.items
        rows = self.U if side == "users" else self.V
        with threadpool_limits(1):
            _kernels.als_cg_half_step(indptr, indices, conf, rows, other, gram, self.cg_steps)
        return rows


def fit_als(X: sp.csr_matrix, U: np.ndarray, V: np.ndarray, *, alpha: float, regularization: float,
            iterations: int, cg_steps: int, workers: int, address: str | None = None,
            on_iteration: Callable[[dict[str, Any]], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """ALS (as :class:`~mosaicrec.models.mf.ALS`) from the starting factors ``U``, ``V`` on ``workers`` Ray
    workers; returns the fitted ``(U, V)``."""
    Xt = X.T.tocsr()
    conf_u = sp.csr_matrix(((1.0 + alpha * X.data).astype(np.float32), X.indices, X.indptr), shape=X.shape)
    conf_i = sp.csr_matrix(((1.0 + alpha * Xt.data).astype(np.float32), Xt.indices, Xt.indptr), shape=Xt.shape)
    eye = np.eye(U.shape[1], dtype=np.float32) * regularization
    user_parts, item_parts = shards(X.shape[0], workers), shards(X.shape[1], workers)
    with ray_session(address, workers) as ray:
        actor = ray.remote(num_cpus=cpus_each(ray, workers))(_ALSShard)
        pool = [actor.remote(_rows(conf_u, *up), _rows(conf_i, *ip), U[up[0]:up[1]], V[ip[0]:ip[1]], cg_steps)
                for up, ip in zip(user_parts, item_parts)]
        try:
            for it in range(iterations):
                t0 = time.perf_counter()
                with threadpool_limits(1):  # the same Gram matrix, bit for bit, as the single-process fit
                    gram = V.T @ V + eye
                ref = ray.put(V)
                U = np.concatenate(ray.get([w.solve.remote("users", ref, gram) for w in pool]))
                with threadpool_limits(1):
                    gram = U.T @ U + eye
                ref = ray.put(U)
                V = np.concatenate(ray.get([w.solve.remote("items", ref, gram) for w in pool]))
                if on_iteration is not None:
                    on_iteration({"iteration": it, "seconds": time.perf_counter() - t0, "workers": len(pool)})
        finally:
            for w in pool:
                ray.kill(w)
    return U, V


class _BPRShard:
    """One worker's users (re-indexed from 0) and their events, its user rows and a copy of the item side."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, U: np.ndarray, seed: int) -> None:
        _kernels.set_threads(1)
        self.indptr, self.indices = indptr, indices
        self.users = np.repeat(np.arange(len(indptr) - 1, dtype=np.int32), np.diff(indptr))
        self.U = np.array(U)
        self.rng = np.random.default_rng(seed)
        self.no_context = np.zeros(len(indices), np.int32)

    def epoch_part(self, V: np.ndarray, bias: np.ndarray, part: int, parts: int, lr: float, reg: float,
                   seed: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Run SGD over this round's share of the events from the broadcast item side; return the changes."""
        if part == 0:
            self.order = self.rng.permutation(len(self.indices))
        pick = self.order[part::parts]
        V_local, b_local = np.array(V), np.array(bias)
        W = np.zeros((1, V.shape[1]), np.float32)
        B = np.zeros((1, V.shape[0]), np.float32)
        _, correct = _kernels.bpr_epoch(self.users[pick], self.indices[pick].astype(np.int32), self.no_context[pick],
                                        self.indptr, self.indices, self.U, V_local, b_local, W, B, lr, reg, 0.0, 0.0,
                                        1, np.uint64(seed))
        return V_local - V, b_local - bias, int(round(correct * len(pick)))

    def factors(self) -> np.ndarray:
        return self.U


def fit_bpr(X: sp.csr_matrix, U: np.ndarray, V: np.ndarray, bias: np.ndarray, *, learning_rate: float,
            regularization: float, iterations: int, seed: int, workers: int, syncs: int = 4,
            address: str | None = None, on_iteration: Callable[[dict[str, Any]], None] | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BPR (as :class:`~mosaicrec.models.mf.BPR`) by parameter mixing over ``workers`` Ray workers, the item
    side summed and broadcast ``syncs`` times an epoch; returns ``(U, V, item_bias)``."""
    parts = shards(X.shape[0], workers)
    n_events = max(1, X.nnz)
    with ray_session(address, workers) as ray:
        actor = ray.remote(num_cpus=cpus_each(ray, workers))(_BPRShard)
        pool = []
        for w, (lo, hi) in enumerate(parts):
            indptr, indices, _ = _rows(X, lo, hi)
            pool.append(actor.remote(indptr, indices.astype(np.int32), U[lo:hi], seed * 7919 + w))
        try:
            for it in range(iterations):
                t0 = time.perf_counter()
                correct = 0
                for part in range(syncs):
                    V_ref, b_ref = ray.put(V), ray.put(bias)
                    out = ray.get([w.epoch_part.remote(V_ref, b_ref, part, syncs, learning_rate, regularization,
                                                       seed * 1_000_003 + it * 1009 + part * 31 + n)
                                   for n, w in enumerate(pool)])
                    V = V + np.sum([o[0] for o in out], axis=0, dtype=np.float32)
                    bias = bias + np.sum([o[1] for o in out], axis=0, dtype=np.float32)
                    correct += sum(o[2] for o in out)
                if on_iteration is not None:
                    on_iteration({"iteration": it, "seconds": time.perf_counter() - t0, "workers": len(pool),
                                  "correct": correct / n_events})
            U = np.concatenate(ray.get([w.factors.remote() for w in pool]))
        finally:
            for w in pool:
                ray.kill(w)
    return U, V.astype(np.float32), bias.astype(np.float32)
