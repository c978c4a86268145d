"""Adapting the text encoder to a catalog: co-liked pairs drawn from the events, and fine-tuning that brings
the texts of co-liked items together."""

import numpy as np
import pytest
import scipy.sparse as sp

from mosaicrec.encoders import create_encoder
from mosaicrec.encoders.adapt import adapt_text_encoder, co_consumption_pairs
from mosaicrec.errors import MosaicError


def _likes() -> sp.csr_matrix:
    rows = [[0, 1, 2], [2, 3], [4], [], [0, 5, 6, 7]]
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(5, 9))


def test_pairs_are_two_different_items_one_user_liked_and_never_an_excluded_one():
    X = _likes()
    liked = {u: set(X[u].indices) for u in range(X.shape[0])}
    pairs = co_consumption_pairs(X, 2000, seed=1, exclude=np.array([5]))
    assert pairs.shape == (2000, 2) and (pairs[:, 0] != pairs[:, 1]).all()
    assert all(any({a, b} <= s for s in liked.values()) for a, b in pairs)
    assert 5 not in pairs and 4 not in pairs and 8 not in pairs  # excluded; a lone like; never liked
    # users are drawn by the pairs their likes make: user 4 (3 items left, 6 ordered pairs) against
    # user 0 (6) and user 1 (2): about 6/14 of the draws name item 7 or 6 or 0 from user 4
    from_4 = np.isin(pairs, [6, 7]).any(axis=1).mean()
    assert 0.3 < from_4 < 0.55
    assert np.array_equal(pairs, co_consumption_pairs(X, 2000, seed=1, exclude=np.array([5])))
    assert co_consumption_pairs(X, 0).shape == (0, 2)
    assert co_consumption_pairs(sp.csr_matrix((3, 4)), 10).shape == (0, 2)
    with pytest.raises(MosaicError):
        co_consumption_pairs(X, -1)
    for bad in ([-1], [9]):  # a negative index would wrap to the last item
        with pytest.raises(MosaicError, match="outside"):
            co_consumption_pairs(X, 10, exclude=np.array(bad))


def test_fine_tuning_brings_co_liked_texts_together_and_leaves_the_encoder_as_shipped():
    """Made-up titles in eight groups whose words say nothing of the group; users like within a group.
    After fine-tuning on co-liked pairs, titles of one group are nearer each other than across groups,
    and the encoder still encodes as before."""
    rng = np.random.default_rng(0)
    words = ["amber", "quill", "harbor", "velvet", "cinder", "maple", "orbit", "lantern", "thistle", "marble",
             "falcon", "meadow", "copper", "willow", "ember", "garnet"]
    texts = [" ".join(rng.choice(words, 3)) + f" {i}" for i in range(32)]
    group = np.arange(32) % 8
    pairs = np.array([rng.choice(np.flatnonzero(group == g), 2, replace=False) for g in rng.integers(0, 8, 320)])
    enc = create_encoder("minilm", threads=2)
    before = enc.encode(texts)

    def margin(E: np.ndarray) -> float:
        E = E / np.linalg.norm(E, axis=1, keepdims=True)
        S = E @ E.T
        same = (group[:, None] == group[None, :]) & ~np.eye(32, dtype=bool)
        return float(S[same].mean() - S[group[:, None] != group[None, :]].mean())

    after = adapt_text_encoder(enc, texts, pairs, epochs=1, batch_size=16, lr=3e-4, progress=False)
    assert after.shape == before.shape and after.dtype == np.float32
    assert margin(after) > margin(before) + 0.1
    np.testing.assert_allclose(enc.encode(texts), before, atol=1e-5)
    with pytest.raises(MosaicError, match="outside"):
        adapt_text_encoder(enc, texts, np.array([[0, 32]]))
    with pytest.raises(MosaicError, match="cannot be fine-tuned"):
        adapt_text_encoder(create_encoder("tfidf"), texts, pairs)
