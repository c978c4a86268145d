"""KG embeddings as an item feature: trained on a generated graph, cached, and added by the [content] config."""

import numpy as np
import pandas as pd
import pytest

from mosaicrec.data.kg import build_item_kg
from mosaicrec.encoders import ContentConfig, EmbeddingCache, encode_content
from mosaicrec.encoders import kg as kgmod
from mosaicrec.encoders.kg import KGEmbeddingConfig, kg_item_content, neighbour_matrix
from mosaicrec.errors import ConfigError


def _catalog(n_groups=4, per_group=8, seed=0):
    """Films in groups: a group shares a director, a writer and two of four lead actors; every film has a
    genre drawn at random (noise) and a few actors of its own."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        for k in range(per_group):
            cast = [f"lead{g}-{j}" for j in rng.choice(4, 2, replace=False)] + [f"solo{g}-{k}-{j}" for j in range(3)]
            rows.append({"item_id": f"{g}-{k}", "title": f"film {g}-{k}",
                         "texts": {"director": f"dir{g}", "writer": f"wri{g}", "cast": "|".join(cast)},
                         "image": None, "audio": None,
                         "attributes": {"genres": [str(rng.choice(["Drama", "Comedy", "War"]))]}})
    rows.append({"item_id": "bare", "title": "no facts", "texts": {}, "image": None, "audio": None,
                 "attributes": {}})
    return pd.DataFrame(rows)


def _group_gap(x: np.ndarray, n_groups=4, per_group=8) -> float:
    """Mean centred cosine within groups minus across groups."""
    x = x[: n_groups * per_group]
    x = x - x.mean(0)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)
    sims = x @ x.T
    g = np.repeat(np.arange(n_groups), per_group)
    same = (g[:, None] == g[None, :]) & ~np.eye(len(g), dtype=bool)
    return float(sims[same].mean() - sims[g[:, None] != g[None, :]].mean())


@pytest.mark.parametrize("model,item_vector", [("transe", "entity"), ("rotate", "entity"),
                                               ("transe", "neighbours"), ("transe", "bag")])
def test_films_sharing_people_end_up_close(model, item_vector):
    kg = build_item_kg(_catalog())
    cfg = KGEmbeddingConfig(model=model, item_vector=item_vector, dim=16, epochs=150, batch_size=256, lr=0.05,
                            threads=1)
    c = kg_item_content(kg, cfg, progress=False)
    x, mask = c.features["kg"], c.masks["kg"]
    assert x.shape == (33, 32 if model == "rotate" else 16)
    assert mask[:-1].all() and not mask[-1] and not x[-1].any()  # the film without facts has no vector
    assert _group_gap(x) > 0.3


def test_same_seed_same_vectors_and_the_cache_skips_training(tmp_path, monkeypatch):
    kg = build_item_kg(_catalog())
    cfg = KGEmbeddingConfig(dim=8, epochs=5, batch_size=128, threads=1)
    with EmbeddingCache(tmp_path / "c.duckdb") as cache:
        first = kg_item_content(kg, cfg, cache=cache, progress=False)
        assert np.array_equal(first.features["kg"], kg_item_content(kg, cfg, progress=False).features["kg"])

        def no_training(*a, **k):
            raise AssertionError("trained again although the vectors are cached")

        monkeypatch.setattr(kgmod, "train_kg_embeddings", no_training)
        again = kg_item_content(kg, cfg, cache=cache, progress=False)
        assert np.allclose(again.features["kg"], first.features["kg"])
        assert np.array_equal(again.masks["kg"], first.masks["kg"])
        # another seed or another graph is another key: trained, not read back
        with pytest.raises(AssertionError, match="trained again"):
            kg_item_content(kg, cfg.model_copy(update={"seed": 1}), cache=cache, progress=False)
        other = build_item_kg(_catalog(seed=3))
        with pytest.raises(AssertionError, match="trained again"):
            kg_item_content(other, cfg, cache=cache, progress=False)


def test_neighbour_matrix_counts_both_directions_once():
    kg = build_item_kg(_catalog(n_groups=1, per_group=2))
    a = neighbour_matrix(kg)
    assert a.shape == (3, kg.n_entities) and a.data.max() == 1.0
    # film 0: director, writer, its genre and five actors
    assert a[0].nnz == 3 + 5


def test_content_config_adds_kg_features_beside_encoders(tmp_path):
    items = _catalog()
    cfg = ContentConfig(encoders={"crew": "tfidf"}, fields={"crew": ["director", "cast"]},
                        params={"crew": {"dim": 8, "min_df": 1}}, cache=str(tmp_path / "c.duckdb"),
                        kg={"graph": {"source": "attributes", "dim": 8, "epochs": 3, "threads": 1},
                            "bag": {"source": "attributes", "item_vector": "bag", "dim": 8}})
    res = encode_content(items, cfg, progress=False)
    assert set(res.content.features) == {"crew", "graph", "bag"}
    assert res.reports[1].encoded == len(items) - 1 and res.reports[1].cached == 0
    again = encode_content(items, cfg, progress=False)  # the second run reads the graph features back
    assert again.reports[1].cached == len(items) - 1 and again.reports[1].encoded == 0
    assert "32/33 items have vectors (32 from cache" in again.reports[1].describe()
    assert res.content.masks["graph"].sum() == len(items) - 1
    assert [r.name for r in res.reports] == ["crew", "graph", "bag"]
    assert res.reports[1].absent == 1 and res.content.sources["graph"].startswith("kg-transe@1-")
    with pytest.raises(ConfigError, match="crew named both"):
        encode_content(items, cfg.model_copy(update={"kg": {"crew": KGEmbeddingConfig(source="attributes")}}),
                       progress=False)
    with pytest.raises(ValueError):
        ContentConfig(kg={"g": {"model": "complex-unknown"}})
    with pytest.raises(ValueError):
        ContentConfig(kg={"g": {"dim": 0}})
