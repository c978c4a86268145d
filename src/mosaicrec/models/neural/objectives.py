"""The training objectives of the neural models, one function each, so a model (or a multi-task head)
names its loss instead of writing it inline.

- :func:`bpr`: pairwise ranking of a positive above a sampled negative (Rendle et al. 2009);
- :func:`info_nce`: contrastive alignment of two views of the same rows (from :mod:`mosaicrec.fusion`,
  which pre-trains the fusion with it; re-exported here for the models);
- :func:`bce` / :func:`mse`: pointwise heads (clicked / liked as binary, watch time as a regression), with
  optional per-example weights.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from mosaicrec.fusion.learned import info_nce

__all__ = ["bce", "bpr", "info_nce", "l2", "mse"]


def bpr(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Mean −log σ(pos − neg): the BPR-Opt criterion over a batch of (positive, negative) score pairs."""
    return -F.logsigmoid(pos - neg).mean()


def l2(*vectors: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the summed squared norms of the vectors a batch touched (BPR's L2 term:
    only the rows used are regularised, as in the SGD original)."""
    return sum(v.square().sum(1) for v in vectors).mean()


def bce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy on logits (labels 0/1), optionally weighted per example."""
    return F.binary_cross_entropy_with_logits(logits, labels.float(), weight=weights)


def mse(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error, optionally weighted per example."""
    err = (pred - target.float()).square()
    return err.mean() if weights is None else (err * weights).sum() / weights.sum().clamp(min=1e-12)
