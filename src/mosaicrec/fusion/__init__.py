"""Fuse stage: per-modality item embeddings → one item representation.

* :func:`concat_features` — fixed concatenation with per-modality normalisation and weights (numpy);
* :class:`ModalityFusion` — a torch module (``concat``, ``gated`` or ``attention``) trained end to end with a
  recommendation loss, where a missing modality is masked out rather than read as a zero vector;
* :func:`cross_modal_map` — a ridge-regression map from one modality's space into another's (text queries
  reaching image-only items);
* :func:`info_nce` / :func:`alignment_loss` — contrastive alignment between modalities and between content
  and collaborative embeddings, usable as pre-training or as an auxiliary loss.

The torch parts live in :mod:`mosaicrec.fusion.learned` and load on first use, so numpy-only callers never
import torch.
"""

from mosaicrec.fusion.base import (FUSIONS, FusionConfig, concat_features, cross_modal_map, modality_matrix,
                                   select_modalities)

__all__ = ["FUSIONS", "FusionConfig", "concat_features", "cross_modal_map", "modality_matrix", "select_modalities"]
