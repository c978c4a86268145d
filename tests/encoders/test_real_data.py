"""On the real shared data, pretrained embeddings carry meaning a person would recognise."""

from __future__ import annotations

import numpy as np

from mosaicrec.data.datasets import load_dataset
from mosaicrec.encoders import create_encoder, encode_items
from tests.conftest import needs_shared

pytestmark = needs_shared


def _nn(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    sims[:, ~mask] = -np.inf
    return sims.argmax(1)


def test_yamnet_neighbours_share_the_music_genre():
    items = load_dataset("emotify").items
    genre = np.array([a["genre"] for a in items["attributes"]])
    pick = np.concatenate([np.flatnonzero(genre == g)[:15] for g in np.unique(genre)])
    result = encode_items(items.iloc[pick], {"audio": create_encoder("yamnet", max_seconds=10)}, progress=False)
    c = result.content
    nn = _nn(c.features["audio"], c.masks["audio"])
    assert c.masks["audio"].all()
    assert (genre[pick][nn] == genre[pick]).mean() >= 0.4  # 4 balanced genres: chance is 0.25


def test_plot_and_poster_neighbours_share_a_film_genre_more_than_chance():
    items = load_dataset("ml100k-multimodal").items.iloc[:150]
    genres = [set(a.get("genres", [])) for a in items["attributes"]]
    result = encode_items(items, {"text": create_encoder("minilm"), "image": create_encoder("efficientnet-lite0")},
                          text_fields=["title", "description"], progress=False)
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, len(items), (3000, 2))
    chance = np.mean([bool(genres[a] & genres[b]) for a, b in pairs if a != b])
    for name, margin in (("text", 0.05), ("image", 0.08)):
        mask = result.content.masks[name]
        nn = _nn(result.content.features[name], mask)
        share = np.mean([bool(genres[i] & genres[nn[i]]) for i in np.flatnonzero(mask)])
        assert share > chance + margin, (name, share, chance)
