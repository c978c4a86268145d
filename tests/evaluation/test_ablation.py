"""What each modality is worth: a drop-one ablation finds the modality that carries the signal, gives the
one that is noise an interval around zero, is paired by user, and is set up from a config."""

from __future__ import annotations

import numpy as np
import pytest

from mosaicrec.data.content import ItemContent
from mosaicrec.data.splits import SplitConfig
from mosaicrec.data.synthetic import synthetic_catalog
from mosaicrec.evaluation.ablation import AblationConfig, ablation_specs, describe, without
from mosaicrec.evaluation.report import markdown, modality_table
from mosaicrec.evaluation.runner import ColdStartConfig, run_experiment
from mosaicrec.models.registry import ModelSpec


@pytest.fixture(scope="module")
def result():
    data, content = synthetic_catalog(n_users=500, n_items=300, n_events=15_000, modalities={"signal": 32},
                                      content_noise=0.5, missing=0.0, seed=3)
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((content.n_items, 32)).astype(np.float32)
    content = ItemContent(content.item_ids, {**content.features, "noise": noise},
                          {**content.masks, "noise": np.ones(content.n_items, bool)},
                          {**content.sources, "noise": "random"})
    models = [ModelSpec(name="mostpop"), ModelSpec(name="content-map", params={"factors": 16})]
    return run_experiment(data, SplitConfig(kind="random", test_fraction=0.2), models, content=content,
                          cold_start=ColdStartConfig(items=0.2), seeds=[0, 1], ablation=AblationConfig())


def test_the_signal_carrying_modality_is_worth_something_and_the_noise_nothing(result):
    labels = [r.label for r in result.rows]
    assert labels == ["mostpop", "content-map", "content-map − signal", "content-map − noise"]
    worth = {(w["scenario"], w["modality"]): w for w in result.modalities}
    assert set(worth) == {(s, m) for s in ("warm", "new items") for m in ("signal", "noise")}
    signal, noise = worth[("new items", "signal")], worth[("new items", "noise")]
    assert signal["ci_low"] > 0.05 and signal["with"] - signal["without"] == pytest.approx(signal["diff"], abs=0.005)
    assert noise["ci_low"] < signal["ci_low"] and abs(noise["diff"]) < signal["diff"] / 3
    assert signal["n"] == sum(map(len, result.rows[1].per_user[("new items", "ndcg@10")]))  # both seeds, paired
    assert describe(signal).startswith("signal: +0.")


def test_the_report_and_the_terminal_show_the_contributions(result):
    md = markdown(result)
    assert "## What each modality is worth" in md
    row = next(line for line in md.splitlines() if line.startswith("| content-map | new items | signal |"))
    assert "[+0." in row
    assert modality_table(result).row_count == 4
    assert result.to_dict()["modalities"][0]["metric"] == "ndcg@10"


def test_a_model_reading_a_listed_fusion_loses_the_modality_from_its_list():
    specs = ablation_specs([ModelSpec(name="content-map", label="cm", params={
        "fusion": {"modalities": ["text", "image", "crew"], "weights": {"image": 0.3}}}),
        ModelSpec(name="ease")], ["text", "image", "crew", "meta"], AblationConfig(modalities=["image", "meta"]))
    assert [(s.display, d.modality) for s, d in specs] == [("cm − image", "image")]  # meta: not read
    assert specs[0][0].params["fusion"] == {"modalities": ["text", "crew"], "weights": {}}
    c = ItemContent(np.array(["a"], dtype=object), {"x": np.ones((1, 2), np.float32), "y": np.ones((1, 2), np.float32)},
                    {"x": np.ones(1, bool), "y": np.ones(1, bool)}, {"x": "e@1", "y": "f@1"})
    assert without(c, "x").modalities == ["y"] and without(c, "x").sources == {"y": "f@1"}


def test_the_ablation_section_is_checked_against_the_experiment():
    from mosaicrec.config import parse_config

    base = {"dataset": {"name": "movielens-100k"}, "models": [{"name": "ease"}, {"name": "content-knn"}],
            "content": {"encoders": {"text": "minilm", "image": "efficientnet-lite0"}}}
    assert parse_config({**base, "ablation": {"modalities": ["image"]}}, "x.toml").ablation.modalities == ["image"]
    for bad, message in (({"models": ["ease"]}, "reads no content"), ({"modalities": ["audio"]}, "no content feature"),
                         ({"metric": "mrr@5"}, "metric")):
        with pytest.raises(Exception, match=message):
            parse_config({**base, "ablation": bad}, "x.toml")
    with pytest.raises(Exception, match="add a \\[content\\] section"):
        parse_config({**base, "content": None, "models": [{"name": "ease"}], "ablation": {}}, "x.toml")
