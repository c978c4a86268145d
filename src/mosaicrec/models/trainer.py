"""The epoch loop shared by models trained by gradient steps: progress records, early stopping on a
validation metric, and a checkpoint of the best epoch's state restored at the end.

The loop is indifferent to the framework: the model passes functions that run one epoch (returning its
record: loss, seconds, …), score the validation part, and save / restore its state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from mosaicrec.models.base import top_k


@dataclass
class TrainResult:
    epochs_run: int
    best_epoch: int | None = None
    best_validation: float | None = None
    # with a validation vector (one value per objective): each objective's best epoch and its checkpoint
    best_epochs: list[int] | None = None
    best_states: list[Any] | None = None


def train_epochs(epochs: int, run_epoch: Callable[[int], dict[str, Any]], on_record: Callable[[dict], None], *,
                 validate: Callable[[], float | Sequence[float]] | None = None, patience: int = 0,
                 checkpoint: Callable[[], Any] | None = None, restore: Callable[[Any], None] | None = None,
                 validate_start: bool = False) -> TrainResult:
    """Run up to ``epochs`` epochs. With ``validate``, each epoch's record gets its ``validation`` score;
    training stops after ``patience`` epochs without a better one, and the best epoch's checkpoint is
    restored (neural models peak early, then overfit: a fixed epoch count is either too short or too long).
    ``validate_start`` scores the state before any epoch too, as epoch ``-1``: a model started from a
    fitted solution keeps it when no epoch improves on it (``best_epoch == -1``).

    ``validate`` may return one value per objective (e.g. per task of a multi-task model), which peak at
    different epochs: an epoch improves when any objective does, each objective's best epoch and checkpoint
    come back in ``best_epochs`` / ``best_states``, and the epoch of the best mean is the one restored."""
    best, best_epoch, best_state, stale = -np.inf, None, None, 0
    parts: np.ndarray | None = None  # each objective's best value so far
    part_epochs: list[int] = []
    part_states: list[Any] = []

    def score(epoch: int, record: dict[str, Any]) -> bool:
        nonlocal best, best_epoch, best_state, parts
        raw = validate()
        vec = np.atleast_1d(np.asarray(raw, dtype=np.float64))
        value = float(vec.mean())
        record["validation"] = value
        if vec.size > 1:
            record["validation parts"] = [float(v) for v in vec]
        if parts is None:
            parts = np.full(vec.size, -np.inf)
            part_epochs.extend([epoch] * vec.size)
            part_states.extend([None] * vec.size)
        better = vec > parts + 1e-9
        improved = value > best + 1e-9
        state = checkpoint() if checkpoint is not None and (improved or (vec.size > 1 and better.any())) else None
        if improved:
            best, best_epoch, best_state = value, epoch, state
        if vec.size > 1:
            for k in np.flatnonzero(better):
                parts[k], part_epochs[k], part_states[k] = vec[k], epoch, state
        return improved or (vec.size > 1 and bool(better.any()))

    if validate is not None and validate_start:
        record = {"epoch": -1, "start": True}
        score(-1, record)
        on_record(record)
    epoch = -1
    for epoch in range(epochs):
        record = run_epoch(epoch)
        if validate is not None:
            stale = 0 if score(epoch, record) else stale + 1
        on_record(record)
        if validate is not None and patience and stale >= patience:
            break
    if best_state is not None and restore is not None and best_epoch != epoch:
        restore(best_state)
    multi = parts is not None and parts.size > 1
    return TrainResult(epoch + 1, best_epoch, None if best_epoch is None else best,
                       part_epochs if multi else None, part_states if multi else None)


def recall_at(U: np.ndarray, V: np.ndarray, b: np.ndarray | None, seen: sp.csr_matrix, relevant: sp.csr_matrix,
              k: int = 20, max_users: int = 2000, seed: int = 0) -> float:
    """Recall@k (hits / |relevant|) of factor scores U·Vᵀ + b on the users with relevant items (a seeded
    sample of at most ``max_users``), their ``seen`` items excluded: the early-stopping signal."""
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    if not len(users):
        return 0.0
    scores = U[users] @ V.T
    if b is not None:
        scores = scores + b.reshape(1, -1)
    rows = seen[users]
    scores[np.repeat(np.arange(len(users)), np.diff(rows.indptr)), rows.indices] = -np.inf
    top, _ = top_k(scores.astype(np.float32), k)
    rel = relevant[users].toarray() > 0
    hits = np.take_along_axis(rel, top, axis=1).sum(axis=1)
    return float(np.mean(hits / rel.sum(axis=1)))


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """The probability that a positive outscores a negative (ties count half); NaN without both classes."""
    labels = np.asarray(labels) > 0
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if not n_pos or not n_neg:
        return float("nan")
    from scipy.stats import rankdata  # here: scipy.stats costs a second and ~30 MB to import, a server none

    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
