"""Numba kernels for the factorisation models: lean loops over the CSR arrays, parallel across users
(ALS) or across sample streams (BPR, lock-free Hogwild updates as in implicit's BPR)."""

from __future__ import annotations

import os

import numba
import numpy as np
from numba import njit, prange

# Numba's default OpenMP layer and torch's OpenMP runtime starve each other: after one of our parallel
# kernels ran, a transformer encoder in the same process ran 25x slower (2.6 vs 69 texts/s). The workqueue
# layer has its own threads and costs nothing measurable here; an explicit NUMBA_THREADING_LAYER wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"


def set_threads(requested: int = 0) -> int:
    """Use ``requested`` threads in the parallel kernels (0: every core); returns the number set."""
    n = max(1, min(requested or os.cpu_count() or 1, numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    return n


@njit(cache=True, inline="always")
def _xorshift(state: np.uint64) -> np.uint64:
    state ^= state << np.uint64(13)
    state ^= state >> np.uint64(7)
    state ^= state << np.uint64(17)
    return state


@njit(cache=True, inline="always")
def _stream_state(seed: np.uint64, stream: int) -> np.uint64:
    """A distinct non-zero xorshift state per (seed, stream)."""
    state = np.uint64(seed) * np.uint64(2654435761) + np.uint64(stream + 1) * np.uint64(0x9E3779B97F4A7C15)
    return state if state != 0 else np.uint64(88172645463325252)


@njit(cache=True, inline="always")
def _below(state: np.uint64, n: int) -> np.int64:
    """A draw in [0, n) from the generator's high 32 bits by a multiply and a shift (Lemire): a 64-bit
    modulo costs tens of cycles, three times per sample."""
    return np.int64(((state >> np.uint64(32)) * np.uint64(n)) >> np.uint64(32))


@njit(cache=True, inline="always")
def _unseen_item(state: np.uint64, indptr: np.ndarray, indices: np.ndarray, u: int, n_items: int
                 ) -> tuple[np.uint64, np.int64]:
    """A uniform item the user has not seen (binary search in their sorted CSR row), up to 10 draws;
    item -1 when all 10 hit seen items. Returns the advanced generator state too."""
    for _try in range(10):
        state = _xorshift(state)
        cand = _below(state, n_items)
        if _seen(indptr, indices, u, cand):
            continue
        return state, cand
    return state, np.int64(-1)


@njit(cache=True, inline="always")
def _seen(indptr: np.ndarray, indices: np.ndarray, u: int, j: int) -> bool:
    """Whether item ``j`` is in user ``u``'s sorted CSR row (binary search)."""
    a = indptr[u]
    hi = indptr[u + 1]
    b = hi
    while a < b:
        m = (a + b) // 2
        if indices[m] < j:
            a = m + 1
        else:
            b = m
    return a < hi and indices[a] == j


@njit(cache=True, inline="always")
def bpr_step(U: np.ndarray, V: np.ndarray, item_bias: np.ndarray, u: int, i: int, j: int, lr: np.float32,
             reg: np.float32) -> bool:
    """One float32 BPR-Opt update of (u, i, j) in place; whether the pair was ranked right before it."""
    f = U.shape[1]
    one = np.float32(1.0)
    x = item_bias[i] - item_bias[j]
    for a in range(f):
        x += U[u, a] * (V[i, a] - V[j, a])
    z = one / (one + np.exp(x))
    item_bias[i] += lr * (z - reg * item_bias[i])
    item_bias[j] += lr * (-z - reg * item_bias[j])
    for a in range(f):
        q = U[u, a]
        vi = V[i, a]
        vj = V[j, a]
        U[u, a] = q + lr * (z * (vi - vj) - reg * q)
        V[i, a] = vi + lr * (z * q - reg * vi)
        V[j, a] = vj + lr * (-z * q - reg * vj)
    return x > 0


@njit(cache=True, parallel=True, fastmath=True)
def als_cg_half_step(indptr: np.ndarray, indices: np.ndarray, confidence: np.ndarray, X: np.ndarray,
                     Y: np.ndarray, YtY_reg: np.ndarray, cg_steps: int) -> None:
    """One ALS half-step for implicit feedback: update every row of ``X`` with a few conjugate-gradient
    steps on (YᵀY + λI + Yᵀ(C_u − I)Y) x_u = Yᵀ C_u p_u, warm-started from the current x_u (Takács et al.).
    ``confidence`` holds c_ui for each stored entry (c_ui − 1 enters the matrix, c_ui the right side)."""
    n_rows, f = X.shape
    # float32 accumulators: a float64 literal would promote every product and convert each store back
    zero = X.dtype.type(0.0)
    one = X.dtype.type(1.0)
    for u in prange(n_rows):
        x = X[u]
        r = np.zeros(f, dtype=X.dtype)
        # r = b - A x, with b = Σ c y and A x = YtY_reg x + Σ (c-1)(y·x) y
        for a in range(f):
            acc = zero
            for b in range(f):
                acc += YtY_reg[a, b] * x[b]
            r[a] = -acc
        for p_ in range(indptr[u], indptr[u + 1]):
            i = indices[p_]
            c = confidence[p_]
            yx = zero
            for a in range(f):
                yx += Y[i, a] * x[a]
            w = c - (c - one) * yx
            for a in range(f):
                r[a] += w * Y[i, a]
        p = r.copy()
        rs_old = zero
        for a in range(f):
            rs_old += r[a] * r[a]
        if rs_old < 1e-20:
            continue
        Ap = np.zeros(f, dtype=X.dtype)
        for _ in range(cg_steps):
            for a in range(f):
                acc = zero
                for b in range(f):
                    acc += YtY_reg[a, b] * p[b]
                Ap[a] = acc
            for p_ in range(indptr[u], indptr[u + 1]):
                i = indices[p_]
                c = confidence[p_]
                yp = zero
                for a in range(f):
                    yp += Y[i, a] * p[a]
                yp *= c - one
                for a in range(f):
                    Ap[a] += yp * Y[i, a]
            pAp = zero
            for a in range(f):
                pAp += p[a] * Ap[a]
            if pAp <= 0.0:
                break
            step = rs_old / pAp
            rs_new = zero
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


@njit(cache=True, inline="always")
def _worse(v1: float, j1: int, v2: float, j2: int) -> bool:
    """Whether neighbour (v1, j1) ranks below (v2, j2): lower similarity, or equal and a higher index."""
    return v1 < v2 or (v1 == v2 and j1 > j2)


@njit(cache=True, inline="always")
def _heap_offer(hv: np.ndarray, hj: np.ndarray, size: int, k: int, v: float, j: int) -> int:
    """Offer (``v``, ``j``) to a bounded min-heap of the ``k`` best (its root the worst kept); returns the
    heap's new size."""
    if size < k:
        pos = size
        while pos > 0:  # sift up
            parent = (pos - 1) // 2
            if _worse(v, j, hv[parent], hj[parent]):
                hv[pos] = hv[parent]
                hj[pos] = hj[parent]
                pos = parent
            else:
                break
        hv[pos] = v
        hj[pos] = j
        return size + 1
    if _worse(hv[0], hj[0], v, j):
        pos = 0
        while True:  # sift down from the root
            child = 2 * pos + 1
            if child >= size:
                break
            if child + 1 < size and _worse(hv[child + 1], hj[child + 1], hv[child], hj[child]):
                child += 1
            if _worse(hv[child], hj[child], v, j):
                hv[pos] = hv[child]
                hj[pos] = hj[child]
                pos = child
            else:
                break
        hv[pos] = v
        hj[pos] = j
    return size


@njit(cache=True, inline="always")
def _sort_best_first(hv: np.ndarray, hj: np.ndarray, size: int) -> None:
    """Insertion sort of the ≤ k kept entries, best first (in place)."""
    for a in range(1, size):
        v, j = hv[a], hj[a]
        b = a - 1
        while b >= 0 and _worse(hv[b], hj[b], v, j):
            hv[b + 1] = hv[b]
            hj[b + 1] = hj[b]
            b -= 1
        hv[b + 1] = v
        hj[b + 1] = j


@njit(cache=True, inline="always")
def _heap_sort_best_first(hv: np.ndarray, hj: np.ndarray, size: int) -> None:
    """Sort a bounded min-heap (root: the worst kept) best first in place, in O(size log size): each step
    moves the worst left to the end of the unsorted part (an insertion sort of 10,000 kept is 5·10⁷ steps)."""
    for end in range(size - 1, 0, -1):
        v, j = hv[end], hj[end]
        hv[end], hj[end] = hv[0], hj[0]
        pos = 0
        while True:  # sift the moved entry down within [0, end)
            child = 2 * pos + 1
            if child >= end:
                break
            if child + 1 < end and _worse(hv[child + 1], hj[child + 1], hv[child], hj[child]):
                child += 1
            if _worse(hv[child], hj[child], v, j):
                hv[pos], hj[pos] = hv[child], hj[child]
                pos = child
            else:
                break
        hv[pos], hj[pos] = v, j


@njit(cache=True, parallel=True, fastmath=True)
def item_knn(item_indptr: np.ndarray, item_users: np.ndarray, item_vals: np.ndarray, user_indptr: np.ndarray,
             user_items: np.ndarray, user_vals: np.ndarray, k: int, shrink: float, n_chunks: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` neighbours of every item by Σ_u x̂_ui x̂_uj over co-occurring users (x̂: column-normalised,
    so the sum is the cosine), optionally shrunk by co-count/(co-count + shrink). Each chunk of items keeps
    one dense accumulator and resets only the entries it touched, so the cost follows the co-occurrences,
    not n². Returns (neighbour indices, similarities), −1 / 0 where an item has fewer than k neighbours."""
    n = len(item_indptr) - 1
    out_idx = np.full((n, k), -1, dtype=np.int32)
    out_val = np.zeros((n, k), dtype=np.float32)
    per = (n + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        acc = np.zeros(n, dtype=np.float32)
        cnt = np.zeros(n, dtype=np.float32)
        touched = np.empty(n, dtype=np.int32)
        mark = np.zeros(n, dtype=np.bool_)
        for i in range(c * per, min(n, (c + 1) * per)):
            m = 0
            for p in range(item_indptr[i], item_indptr[i + 1]):
                u = item_users[p]
                w = item_vals[p]
                for q in range(user_indptr[u], user_indptr[u + 1]):
                    j = user_items[q]
                    # a marker, not acc == 0: with negative weights a sum can return to zero
                    if not mark[j]:
                        mark[j] = True
                        touched[m] = j
                        m += 1
                    acc[j] += w * user_vals[q]
                    cnt[j] += 1.0
            # A bounded min-heap keeps the k best (similarity, then lower index) in O(m log k); sorting every
            # touched item, or numba's np.partition (slow to compile), cost more.
            hv = np.empty(k, dtype=np.float32)
            hj = np.empty(k, dtype=np.int32)
            size = 0
            for t in range(m):
                j = touched[t]
                v = acc[j]
                if shrink > 0.0:
                    v *= cnt[j] / (cnt[j] + shrink)
                acc[j] = 0.0
                cnt[j] = 0.0
                mark[j] = False
                if j != i and v > 0.0:
                    size = _heap_offer(hv, hj, size, k, v, j)
            _sort_best_first(hv, hj, size)
            for r in range(size):
                out_idx[i, r] = hj[r]
                out_val[i, r] = hv[r]
    return out_idx, out_val


@njit(cache=True, parallel=True, fastmath=True)
def bpr_epoch(ev_users: np.ndarray, ev_items: np.ndarray, ev_ctx: np.ndarray, indptr: np.ndarray,
              indices: np.ndarray, U: np.ndarray, V: np.ndarray, item_bias: np.ndarray, W: np.ndarray,
              B: np.ndarray, lr: float, reg: float, reg_ctx: float, shared: float, n_streams: int,
              seed: np.uint64) -> tuple[int, float]:
    """One epoch of BPR-Opt SGD, with contexts: x_uij(c) = (U_u + W_c)·(V_i − V_j) + b_i − b_j + B_ci − B_cj,
    over as many (u, i, c) samples as events, split over ``n_streams`` streams, each with its own seeded
    xorshift generator, updating lock-free (Hogwild). Context 0 is "none": W_0 and B_0 stay zero, so plain
    BPR is every event in context 0 (W and B of one row). Negatives j that the user has seen (``indptr`` /
    ``indices``: the user's items) are resampled up to 10 times, then the sample is skipped. A share
    ``shared`` of the samples drops its context (uses 0), so that the shared part alone ranks well for
    requests without a context or in one never seen in training. Returns (skipped samples, share of samples
    already ranked right before their update), a cheap progress signal (a log-likelihood would cost two
    more transcendental calls per sample)."""
    n_ev = len(ev_users)
    n_items = V.shape[0]
    f = U.shape[1]
    per = (n_ev + n_streams - 1) // n_streams
    threshold = np.uint64(shared * 4294967295.0)
    skipped = np.zeros(n_streams, dtype=np.int64)
    correct = np.zeros(n_streams, dtype=np.int64)
    for s in prange(n_streams):
        state = _stream_state(seed, s)
        for _ in range(per):
            state = _xorshift(state)
            e = _below(state, n_ev)
            u = ev_users[e]
            i = ev_items[e]
            state = _xorshift(state)
            c = ev_ctx[e] if (state & np.uint64(4294967295)) >= threshold else 0
            state, j = _unseen_item(state, indptr, indices, u, n_items)
            if j < 0:
                skipped[s] += 1
                continue
            x = item_bias[i] - item_bias[j] + B[c, i] - B[c, j]
            for a in range(f):
                x += (U[u, a] + W[c, a]) * (V[i, a] - V[j, a])
            z = 1.0 / (1.0 + np.exp(x))
            if x > 0.0:
                correct[s] += 1
            item_bias[i] += lr * (z - reg * item_bias[i])
            item_bias[j] += lr * (-z - reg * item_bias[j])
            if c > 0:
                B[c, i] += lr * (z - reg_ctx * B[c, i])
                B[c, j] += lr * (-z - reg_ctx * B[c, j])
            for a in range(f):
                q = U[u, a] + W[c, a]
                vi = V[i, a]
                vj = V[j, a]
                U[u, a] += lr * (z * (vi - vj) - reg * U[u, a])
                if c > 0:
                    W[c, a] += lr * (z * (vi - vj) - reg_ctx * W[c, a])
                V[i, a] += lr * (z * q - reg * vi)
                V[j, a] += lr * (-z * q - reg * vj)
    return int(skipped.sum()), float(correct.sum() / max(1, n_streams * per))


@njit(cache=True, parallel=True, fastmath=True)
def bpr_epoch_plain(ev_users: np.ndarray, ev_items: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
                    U: np.ndarray, V: np.ndarray, item_bias: np.ndarray, lr: np.float32, reg: np.float32,
                    n_streams: int, seed: np.uint64) -> tuple[int, float]:
    """:func:`bpr_epoch` without contexts, all in float32: plain BPR's hot loop reads no context rows and
    converts nothing to float64, which made it 1.5-1.7x implicit's time. Same sampling (uniform events,
    uniform unseen negatives), same updates, same return values."""
    n_ev = len(ev_users)
    n_items = V.shape[0]
    per = (n_ev + n_streams - 1) // n_streams
    skipped = np.zeros(n_streams, dtype=np.int64)
    correct = np.zeros(n_streams, dtype=np.int64)
    for s in prange(n_streams):
        state = _stream_state(seed, s)
        for _ in range(per):
            state = _xorshift(state)
            e = _below(state, n_ev)
            u = ev_users[e]
            i = ev_items[e]
            state, j = _unseen_item(state, indptr, indices, u, n_items)
            if j < 0:
                skipped[s] += 1
                continue
            if bpr_step(U, V, item_bias, u, i, j, lr, reg):
                correct[s] += 1
    return int(skipped.sum()), float(correct.sum() / max(1, n_streams * per))


@njit(cache=True, nogil=True)
def top_k_rows(scores: np.ndarray, k: int, tie_rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` largest entries, best first (NaN never kept): one pass per row that rejects most
    entries with a single comparison against the worst kept. Equal values go to the lower index, or, given
    ``tie_rank`` (a permutation of the columns; empty: none), to the lower rank. Serial and without the GIL:
    callers split rows over threads (the workqueue layer must not be entered from two threads at once, and a
    service ranks from several)."""
    n, m = scores.shape
    kk = min(k, m)
    keyed = len(tie_rank) > 0
    item_of = np.empty(m if keyed else 0, dtype=np.int64)
    for j in range(len(item_of)):
        item_of[tie_rank[j]] = j
    out_idx = np.full((n, kk), -1, dtype=np.int64)
    out_val = np.full((n, kk), -np.inf, dtype=scores.dtype)
    hv = np.empty(kk, dtype=scores.dtype)
    hj = np.empty(kk, dtype=np.int64)
    for r in range(n):
        size = 0
        row = scores[r]
        j = 0
        while j < m:
            stop = min(j + 16, m)
            if size == kk and stop - j == 16:
                # a block of 16 beats the worst kept nowhere, in the usual case: one vectorised test
                worst = hv[0]
                top = worst
                for t in range(16):
                    v = row[j + t]
                    top = v if v > top else top  # NaN never compares greater: never kept
                if not (top > worst or (keyed and top == worst)):
                    j = stop
                    continue
            for t in range(j, stop):
                v = row[t]
                if v != v or (size == kk and v < hv[0]):
                    continue
                if keyed:
                    size = _heap_offer(hv, hj, size, kk, v, tie_rank[t])
                elif size < kk or v > hv[0]:  # indices rise along the row: an equal entry ranks below
                    size = _heap_offer(hv, hj, size, kk, v, t)
            j = stop
        _heap_sort_best_first(hv, hj, size)
        for t in range(size):
            out_idx[r, t] = item_of[hj[t]] if keyed else hj[t]
            out_val[r, t] = hv[t]
    return out_idx, out_val
