"""Re-ranking and explanations over item vectors: MMR diversity and "because you liked X"."""

from __future__ import annotations

import numpy as np


def mmr(candidates: np.ndarray, scores: np.ndarray, vectors: np.ndarray, k: int, lam: float) -> np.ndarray:
    """Maximal marginal relevance: pick ``k`` of ``candidates`` greedily by
    ``lam · relevance − (1 − lam) · max cosine to the items already picked``. ``lam = 1`` is the plain
    ranking; lower values trade relevance for variety. Relevance is min-max scaled to [0, 1] first so that
    ``lam`` means the same for every model. ``vectors`` rows must be L2-normalised."""
    if len(candidates) == 0 or k <= 0:
        return candidates[:0]
    rel = scores.astype(np.float64)
    span = rel.max() - rel.min()
    rel = (rel - rel.min()) / span if span > 0 else np.ones_like(rel)
    v = vectors[candidates]
    picked: list[int] = []
    max_sim = np.full(len(candidates), -np.inf)
    available = np.ones(len(candidates), bool)
    for _ in range(min(k, len(candidates))):
        penalty = np.where(np.isfinite(max_sim), max_sim, 0.0)
        gain = np.where(available, lam * rel - (1 - lam) * penalty, -np.inf)
        best = int(np.argmax(gain))
        picked.append(best)
        available[best] = False
        max_sim = np.maximum(max_sim, v @ v[best])
    return candidates[np.array(picked)]


def explain(items: np.ndarray, history: np.ndarray, modality_vectors: dict[str, np.ndarray],
            modality_masks: dict[str, np.ndarray]) -> list[tuple[int | None, str | None]]:
    """For each item, the history item most similar to it (mean cosine over the modalities both have)
    and the modality in which they are most alike: what a "because you liked X (similar plot)" line
    says. ``(None, None)`` where nothing in the history shares a modality with the item. One product per
    modality for the whole list."""
    if len(history) == 0 or len(items) == 0 or not modality_vectors:
        return [(None, None)] * len(items)
    names = list(modality_vectors)
    if len(names) == 1:  # one modality (the common serving case): the same answer in a third of the calls
        (m, vec), mask = next(iter(modality_vectors.items())), modality_masks[names[0]]
        sims = np.where(mask[items][:, None] & mask[history][None, :], vec[items] @ vec[history].T, -np.inf)
        best = sims.argmax(axis=1)
        ok = np.isfinite(sims[np.arange(len(items)), best])
        return [(int(history[h]), m) if good else (None, None) for h, good in zip(best.tolist(), ok.tolist())]
    sims = np.stack([modality_vectors[m][items] @ modality_vectors[m][history].T for m in names])  # (M, K, H)
    both = np.stack([modality_masks[m][items][:, None] & modality_masks[m][history][None, :] for m in names])
    count = both.sum(axis=0)
    mean = np.where(count > 0, (sims * both).sum(axis=0) / np.maximum(count, 1), -np.inf)  # (K, H)
    rows = np.arange(len(items))
    best = mean.argmax(axis=1)
    modality = np.where(both[:, rows, best], sims[:, rows, best], -np.inf).argmax(axis=0)
    found = np.isfinite(mean[rows, best])
    return [(int(history[h]), names[m]) if ok else (None, None)
            for h, m, ok in zip(best.tolist(), modality.tolist(), found.tolist())]
