"""Numba kernels for the factorisation models: lean loops over the CSR arrays, parallel across users
(ALS) or across sample streams (BPR, lock-free Hogwild updates as in implicit's BPR)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _xorshift(state: np.uint64) -> np.uint64:
    state ^= state << np.uint64(13)
    state ^= state >> np.uint64(7)
    state ^= state << np.uint64(17)
    return state


@njit(cache=True, parallel=True, fastmath=True)
def als_cg_half_step(indptr: np.ndarray, indices: np.ndarray, confidence: np.ndarray, X: np.ndarray,
                     Y: np.ndarray, YtY_reg: np.ndarray, cg_steps: int) -> None:
    """One ALS half-step for implicit feedback: update every row of ``X`` with a few conjugate-gradient
    steps on (YᵀY + λI + Yᵀ(C_u − I)Y) x_u = Yᵀ C_u p_u, warm-started from the current x_u (Takács et al.).
    ``confidence`` holds c_ui for each stored entry (c_ui − 1 enters the matrix, c_ui the right side)."""
    n_rows, f = X.shape
    for u in prange(n_rows):
        x = X[u]
        r = np.zeros(f, dtype=X.dtype)
        # r = b - A x, with b = Σ c y and A x = YtY_reg x + Σ (c-1)(y·x) y
        for a in range(f):
            acc = 0.0
            for b in range(f):
                acc += YtY_reg[a, b] * x[b]
            r[a] = -acc
        for p_ in range(indptr[u], indptr[u + 1]):
            i = indices[p_]
            c = confidence[p_]
            yx = 0.0
            for a in range(f):
                yx += Y[i, a] * x[a]
            w = c - (c - 1.0) * yx
            for a in range(f):
                r[a] += w * Y[i, a]
        p = r.copy()
        rs_old = 0.0
        for a in range(f):
            rs_old += r[a] * r[a]
        if rs_old < 1e-20:
            continue
        Ap = np.zeros(f, dtype=X.dtype)
        for _ in range(cg_steps):
            for a in range(f):
                acc = 0.0
                for b in range(f):
                    acc += YtY_reg[a, b] * p[b]
                Ap[a] = acc
            for p_ in range(indptr[u], indptr[u + 1]):
                i = indices[p_]
                c = confidence[p_]
                yp = 0.0
                for a in range(f):
                    yp += Y[i, a] * p[a]
                yp *= c - 1.0
                for a in range(f):
                    Ap[a] += yp * Y[i, a]
            pAp = 0.0
            for a in range(f):
                pAp += p[a] * Ap[a]
            if pAp <= 0.0:
                break
            step = rs_old / pAp
            rs_new = 0.0
            for a in range(f):
                x[a] += step * p[a]
                r[a] -= step * Ap[a]
                rs_new += r[a] * r[a]
            if rs_new < 1e-20:
                break
            beta = rs_new / rs_old
            for a in range(f):
                p[a] = r[a] + beta * p[a]
            rs_old = rs_new


@njit(cache=True, parallel=True, fastmath=True)
def bpr_epoch(indptr: np.ndarray, indices: np.ndarray, users_of_entry: np.ndarray, U: np.ndarray,
              V: np.ndarray, item_bias: np.ndarray, lr: float, reg: float, n_streams: int,
              seed: np.uint64) -> tuple[int, float]:
    """One epoch of BPR-Opt SGD: as many (u, i, j) samples as stored entries, split over ``n_streams``
    streams, each with its own seeded xorshift generator. Negatives j that the user has seen are resampled
    up to 10 times, then the sample is skipped. Returns (skipped samples, mean log-likelihood)."""
    nnz = len(indices)
    n_items = V.shape[0]
    f = U.shape[1]
    per = (nnz + n_streams - 1) // n_streams
    skipped = np.zeros(n_streams, dtype=np.int64)
    loglik = np.zeros(n_streams, dtype=np.float64)
    for s in prange(n_streams):
        state = np.uint64(seed) * np.uint64(2654435761) + np.uint64(s + 1) * np.uint64(0x9E3779B97F4A7C15)
        if state == 0:
            state = np.uint64(88172645463325252)
        for _ in range(per):
            state = _xorshift(state)
            e = np.int64(state % np.uint64(nnz))
            u = users_of_entry[e]
            i = indices[e]
            lo = indptr[u]
            hi = indptr[u + 1]
            j = np.int64(-1)
            for _try in range(10):
                state = _xorshift(state)
                cand = np.int64(state % np.uint64(n_items))
                # binary search in the user's sorted seen items
                a = lo
                b = hi
                while a < b:
                    m = (a + b) // 2
                    if indices[m] < cand:
                        a = m + 1
                    else:
                        b = m
                if a < hi and indices[a] == cand:
                    continue
                j = cand
                break
            if j < 0:
                skipped[s] += 1
                continue
            x = item_bias[i] - item_bias[j]
            for a in range(f):
                x += U[u, a] * (V[i, a] - V[j, a])
            z = 1.0 / (1.0 + np.exp(x))
            loglik[s] += -np.log1p(np.exp(-x)) if x > -30 else x
            item_bias[i] += lr * (z - reg * item_bias[i])
            item_bias[j] += lr * (-z - reg * item_bias[j])
            for a in range(f):
                uf = U[u, a]
                vi = V[i, a]
                vj = V[j, a]
                U[u, a] += lr * (z * (vi - vj) - reg * uf)
                V[i, a] += lr * (z * uf - reg * vi)
                V[j, a] += lr * (-z * uf - reg * vj)
    return int(skipped.sum()), float(loglik.sum() / max(1, n_streams * per))


@njit(cache=True, fastmath=True)
def biased_mf_epoch(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, order: np.ndarray,
                    mu: float, bu: np.ndarray, bi: np.ndarray, P: np.ndarray, Q: np.ndarray, lr: float,
                    reg: float, reg_bias: float) -> float:
    """One SGD epoch on squared error of r̂ = μ + b_u + b_i + p_uᵀq_i, in the given order. Returns the
    epoch's training RMSE (before each update)."""
    f = P.shape[1]
    sse = 0.0
    for n in order:
        u = users[n]
        i = items[n]
        pred = mu + bu[u] + bi[i]
        for a in range(f):
            pred += P[u, a] * Q[i, a]
        e = ratings[n] - pred
        sse += e * e
        bu[u] += lr * (e - reg_bias * bu[u])
        bi[i] += lr * (e - reg_bias * bi[i])
        for a in range(f):
            pu = P[u, a]
            qi = Q[i, a]
            P[u, a] += lr * (e * qi - reg * pu)
            Q[i, a] += lr * (e * pu - reg * qi)
    return np.sqrt(sse / max(1, len(order)))
