"""Adapting a pretrained text encoder to a catalog: fine-tuning it on pairs of items liked by the same users.

A sentence encoder places two titles near each other when they *read* alike; a catalog's users treat items
as alike when the same people like them. :func:`co_consumption_pairs` draws such pairs from the training
events, and :func:`adapt_text_encoder` fine-tunes the sentence-transformers model on them with the
in-batch contrastive loss of sentence-transformers' ``MultipleNegativesRankingLoss`` (each pair's other
item against every other item of the batch, both directions), then encodes every item's text with the
adapted weights. The loop is written here (twenty lines) rather than through sentence-transformers'
trainer, which would add the ``datasets`` and ``accelerate`` packages for one loop.

Only the training events may choose the pairs: in an offline evaluation, items held out (and any
validation items) must be left out of them (``exclude``), or the encoder learns the answer.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from rich.progress import Progress

from mosaicrec.encoders.base import Encoder
from mosaicrec.errors import MosaicError


def co_consumption_pairs(liked: sp.spmatrix, n_pairs: int, *, seed: int = 0,
                         exclude: np.ndarray | None = None) -> np.ndarray:
    """``n_pairs`` (item, item) index pairs, each two different items liked by one user: a user drawn
    with probability proportional to how many pairs their likes make (so each co-liked pair is about
    equally likely), then two of their liked items. ``exclude`` (item indices) never appears. Returns an
    ``(n, 2)`` int64 array, fewer rows when no user likes two items."""
    if n_pairs < 0:
        raise MosaicError(f"n_pairs must be ≥ 0, got {n_pairs}")
    X = sp.csr_matrix(liked, copy=True)
    if exclude is not None and len(exclude):
        exclude = np.asarray(exclude, np.int64)
        if exclude.min() < 0 or exclude.max() >= X.shape[1]:  # a negative index would silently wrap
            raise MosaicError(f"exclude holds item indices outside 0..{X.shape[1] - 1}")
        keep = np.ones(X.shape[1], np.float32)
        keep[exclude] = 0
        X = sp.csr_matrix(X @ sp.diags(keep))
    X.eliminate_zeros()
    n = np.diff(X.indptr)
    weight = n * (n - 1.0)
    if n_pairs == 0 or weight.sum() == 0:
        return np.zeros((0, 2), np.int64)
    rng = np.random.default_rng(seed)
    users = rng.choice(len(n), size=n_pairs, p=weight / weight.sum())
    a = rng.integers(0, n[users])
    b = rng.integers(0, n[users] - 1)
    b = b + (b >= a)  # a second, different liked item
    start = X.indptr[users]
    return np.stack([X.indices[start + a], X.indices[start + b]], axis=1).astype(np.int64)


def adapt_text_encoder(encoder: Encoder, texts: Sequence[str], pairs: np.ndarray, *, epochs: int = 1,
                       batch_size: int = 64, lr: float = 2e-5, scale: float = 20.0, seed: int = 0,
                       encode_batch: int = 128, progress: bool = True) -> np.ndarray:
    """Fine-tune a copy of a sentence-transformers ``encoder``'s model (``minilm``) on ``pairs`` of
    ``texts`` indices, then return every text's embedding (``len(texts) × dim``, float32) from the adapted
    copy. The encoder itself stays as shipped: its embedding cache is keyed by its name and version, and
    adapted vectors depend on the events they were adapted to.

    The loss is InfoNCE over the batch with cosine similarity × ``scale`` (sentence-transformers' default
    for this loss), symmetric in the pair's two items; pairs repeating an item of the batch are kept (a
    rare false negative costs less than a smaller batch). ``lr`` is a fine-tuning rate: larger ones
    overwrite what the model knew of language with a few thousand pairs."""
    import torch

    if "sentence_transformers" not in {module for module, _ in encoder.requires}:
        raise MosaicError(f"encoder {encoder.name!r} cannot be fine-tuned here: only sentence-transformers "
                          "encoders (minilm) can")
    model = copy.deepcopy(encoder.setup().model)
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    if len(pairs) and (pairs.min() < 0 or pairs.max() >= len(texts)):
        raise MosaicError(f"pairs hold indices outside 0..{len(texts) - 1} (the texts)")
    if batch_size < 2 or epochs < 0:
        raise MosaicError("batch_size must be ≥ 2 and epochs ≥ 0")
    texts = [str(t) for t in texts]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    f = torch.nn.functional
    steps = epochs * (len(pairs) // batch_size)
    model.train()
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("fine-tuning the text encoder on co-liked pairs", total=steps)
        for _ in range(epochs):
            order = rng.permutation(len(pairs))
            for b in range(len(pairs) // batch_size):
                batch = pairs[order[b * batch_size:(b + 1) * batch_size]]
                emb = _embed(model, [texts[i] for i in batch.ravel()])
                emb = f.normalize(emb, dim=1).view(len(batch), 2, -1)
                sim = emb[:, 0] @ emb[:, 1].T * scale
                target = torch.arange(len(batch))
                loss = (f.cross_entropy(sim, target) + f.cross_entropy(sim.T, target)) / 2
                opt.zero_grad()
                loss.backward()
                opt.step()
                bar.advance(task)
    model.eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(texts), encode_batch):
            out.append(_embed(model, texts[s:s + encode_batch]).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def _embed(model: Any, texts: list[str]) -> Any:
    features = model.preprocess(texts)
    return model(features)["sentence_embedding"]
