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


def because_of(item: int, history: np.ndarray, modality_vectors: dict[str, np.ndarray],
               modality_masks: dict[str, np.ndarray]) -> tuple[int | None, str | None, float]:
    """The history item most similar to ``item`` (mean cosine over the modalities both have) and the
    modality in which they are most alike: what a "because you liked X (similar plot)" line says."""
    best, best_sim, best_mod = None, -np.inf, None
    for h in history:
        sims = {m: float(v[item] @ v[h]) for m, v in modality_vectors.items()
                if modality_masks[m][item] and modality_masks[m][h]}
        if not sims:
            continue
        mean = float(np.mean(list(sims.values())))
        if mean > best_sim:
            best, best_sim, best_mod = int(h), mean, max(sims, key=sims.get)
    return best, best_mod, (best_sim if best is not None else 0.0)
