"""Fusion settings shared by every content model, and the fixed (non-learned) concatenation."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mosaicrec.data.content import ItemContent
from mosaicrec.errors import ConfigError

#: ``concat``: weighted concatenation, then a learned projection; ``gated``: per-modality projections mixed
#: by learned element-wise gates; ``attention``: a learned query attends over the modality tokens.
FUSIONS = ("concat", "gated", "attention")
FusionKind = Literal["concat", "gated", "attention"]


class FusionConfig(BaseModel):
    """How a content model combines modalities (the ``fusion`` keys of a model's params)."""

    model_config = ConfigDict(extra="forbid")

    kind: FusionKind = "concat"
    modalities: list[str] | None = Field(None, description="content names to use (None: all there are)")
    weights: dict[str, float] = Field(default_factory=dict, description="per-modality weight (default 1)")
    center: bool = Field(True, description="subtract each modality's mean item vector before normalising: "
                         "pretrained embeddings are anisotropic (e5 plots have a mean cosine of 0.8), so "
                         "raw cosines mostly say 'both are film plots'")


def select_modalities(content: ItemContent, wanted: list[str] | None, model: str) -> list[str]:
    """The modalities a model will read, checked against what the content holds."""
    names = list(content.modalities) if wanted is None else list(wanted)
    missing = [m for m in names if m not in content.features]
    if missing or not names:
        have = ", ".join(content.modalities) or "none"
        what = f"no {missing[0]!r} content" if missing else "no content"
        raise ConfigError(f"{model}: {what} (the content has: {have}); encode it first or change modalities")
    return names


def concat_features(content: ItemContent, modalities: list[str], weights: dict[str, float] | None = None,
                    center: bool = False) -> np.ndarray:
    """One row per item: each modality L2-normalised (with ``center``, its mean over the items that have
    it subtracted first, and normalised again) and scaled by √weight, then concatenated, so that the dot
    product of two rows is the weighted sum of per-modality cosines. A missing modality is a zero block
    (it contributes nothing to any similarity)."""
    weights = weights or {}
    blocks = []
    for m in modalities:
        x = modality_matrix(content, m, center)
        blocks.append(x * np.float32(np.sqrt(weights.get(m, 1.0))))
    return np.concatenate(blocks, axis=1)


def modality_matrix(content: ItemContent, modality: str, center: bool = False) -> np.ndarray:
    """One modality's item vectors, L2-normalised (centred first with ``center``), zero where missing."""
    x = content.features[modality].astype(np.float32, copy=True)
    mask = content.masks[modality]
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if center and mask.any():
        x -= x[mask].mean(axis=0)
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    x[~mask] = 0.0
    return x


def cross_modal_map(src: np.ndarray, dst: np.ndarray, reg: float = 1.0) -> np.ndarray:
    """A linear map ``W`` (``d_src × d_dst``) from one modality's space into another's, fitted by ridge
    regression on paired rows (the same items seen in both; rows L2-normalised here):
    ``W = (SᵀS + reg·I)⁻¹ SᵀD``. With no joint text–image encoder available offline, this is how a text
    query reaches items known only by their image: the catalog's own pairs teach where a text lands in
    image space. Closed form, deterministic, milliseconds for a few thousand pairs."""
    S = src / np.maximum(np.linalg.norm(src, axis=1, keepdims=True), 1e-12)
    D = dst / np.maximum(np.linalg.norm(dst, axis=1, keepdims=True), 1e-12)
    S, D = S.astype(np.float64), D.astype(np.float64)
    return np.linalg.solve(S.T @ S + reg * np.eye(S.shape[1]), S.T @ D).astype(np.float32)
