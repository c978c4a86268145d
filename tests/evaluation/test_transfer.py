"""Transfer experiments: pre-train on one scenario and fine-tune on another, or fit on one catalog and score
another; their config, reports and the CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from mosaicrec.config import parse_config
from mosaicrec.data.schema import Dataset
from mosaicrec.data.splits import SplitConfig
from mosaicrec.evaluation.protocol import EvaluationConfig
from mosaicrec.evaluation.transfer import (TransferConfig, catalog_cut, first_values, run_transfer, share_of,
                                           write_transfer_reports)
from mosaicrec.models.registry import ModelSpec
from tests.conftest import planted, planted_content
from tests.evaluation.test_impressions import _dataset
from tests.models.test_multitask import FAST, impressions


def _big_and_small() -> Dataset:
    """The generated impressions with scenario "a" as the big surface and "b" a small one (a tenth of the
    events); clicks follow the same taste in both but for the odd items, flipped in "b"."""
    x = impressions(n_users=120, per_user=80)
    rng = np.random.default_rng(1)
    scen = np.asarray(x.context["scenario"]).astype(str)
    small = (scen == "b") & (rng.random(x.n_events) < 0.2)
    return _dataset(replace(x, context={**x.context, "scenario": np.where(small, "b", "a").astype(object)}))


def test_a_pretrained_model_fine_tuned_on_a_small_share_beats_training_on_that_share_alone(tmp_path):
    data = _big_and_small()
    tc = TransferConfig(kind="scenarios", source="a", targets=["b"], shares=[0.1, 1.0], labels=["click"])
    spec = ModelSpec(name="multitask", label="mmoe", params={**FAST, "architecture": "mmoe", "epochs": 8,
                                                              "features": ["hour"]})
    seen = []
    result = run_transfer(data, tc, SplitConfig(kind="temporal", test_fraction=0.25), [spec], seeds=[0, 1],
                          name="t", on_run=lambda label, row: seen.append((label, row)))
    assert len(result.rows) == 2 * (1 + 2 * 2) and [r for _, r in seen] == result.rows
    pick = {(r["seed"], r["share"], r["arm"]): r for r in result.rows}
    for seed in (0, 1):
        tenth = pick[seed, 0.1, "transfer"]
        assert tenth["click auc"] > pick[seed, 0.1, "scratch"]["click auc"] + 0.05
        assert tenth["events"] == pick[seed, 0.1, "scratch"]["events"] < pick[seed, 1.0, "scratch"]["events"]
        assert pick[seed, 0.0, "pre-trained"]["click auc"] > 0.6  # "b" shares half its rule with "a"
    report = write_transfer_reports(result, tmp_path)
    text = report.read_text()
    assert "| b | 0.1 |" in text and "pre-trained only" in text and (tmp_path / "transfer.png").stat().st_size > 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(result.rows)) and saved["transfer"]["source"] == "a"


def test_shares_are_seeded_draws_of_the_events():
    x = planted()
    a, b, c = share_of(x, 0.3, 0), share_of(x, 0.3, 0), share_of(x, 0.3, 1)
    assert a.n_events == round(0.3 * x.n_events) and np.array_equal(a.items, b.items)
    assert not np.array_equal(a.items, c.items) and share_of(x, 1.0, 0) is x


def _catalog_world() -> tuple[Dataset, object]:
    """The planted groups, each group's items carrying the group as their genre (a list, or a plain string
    as a loader gives a single genre): catalog A gets groups 0 and 2, B groups 1 and 3; content places items
    near their group's centre."""
    x = planted(per_user=16)
    group = np.arange(x.n_items) // (x.n_items // 4)
    items = pd.DataFrame({"item_id": x.item_ids, "title": "", "texts": [{}] * x.n_items, "image": None,
                          "audio": None, "attributes": [{"genres": [f"g{g}", "other"] if n % 2 else f"g{g}"}
                                                        for n, g in enumerate(group)]})
    users = pd.DataFrame({"user_id": x.user_ids, "attributes": [{}] * x.n_users})
    return Dataset("planted", x, items, users), planted_content(x)


def test_a_content_model_fitted_on_one_catalog_ranks_another_it_never_saw(tmp_path):
    data, content = _catalog_world()
    in_a = catalog_cut(data.items, "genres")
    group = np.arange(data.interactions.n_items) // 20
    assert np.array_equal(in_a, np.isin(group, [0, 2]))  # equal sizes: dealt in order of first appearance
    assert first_values(data.items, "genres")[:2] == ["g0", "g0"]  # a string is one value, not letters
    tc = TransferConfig(kind="catalog", attribute="genres", zero_shot=["content-knn"])
    specs = [ModelSpec(name="content-knn"), ModelSpec(name="mostpop")]
    result = run_transfer(data, tc, SplitConfig(kind="leave_last_out"), specs,
                          EvaluationConfig(ks=[10], metrics=["ndcg", "recall"]), content=content, seeds=[0, 1])
    rows = {(r["seed"], r["model"], r["trained_on"]): r for r in result.rows}
    assert {k[1:] for k in rows} == {("content-knn", "A (zero-shot)"), ("content-knn", "B"), ("mostpop", "B"),
                                     ("random", "nothing")}
    for seed in (0, 1):
        zero = rows[seed, "content-knn", "A (zero-shot)"]["ndcg@10"]
        assert zero > 2 * rows[seed, "random", "nothing"]["ndcg@10"] and zero > 0.2
    assert result.info["users"] == 60  # the users of groups 1 and 3: the only ones with B events
    text = write_transfer_reports(result, tmp_path, baseline="mostpop").read_text()
    assert "| content-knn | A (zero-shot) |" in text and "ndcg@10 / mostpop on B" in text


@pytest.mark.parametrize("section, models, match", [
    ({"kind": "scenarios", "targets": ["0"]}, [{"name": "multitask"}], "needs a source scenario"),
    ({"kind": "scenarios", "source": "1", "targets": ["1", "0"]}, [{"name": "multitask"}], "also a target"),
    ({"kind": "scenarios", "source": "1", "targets": ["0"], "shares": [0.0]}, [{"name": "multitask"}],
     "shares must lie in"),
    ({"kind": "scenarios", "source": "1", "targets": ["0"], "shares": [1.5]}, [{"name": "multitask"}],
     "shares must lie in"),
    ({"kind": "scenarios", "source": "1", "targets": ["0"]}, [{"name": "ease"}], "cannot be fine-tuned"),
    ({"kind": "catalog", "zero_shot": ["nope"]}, [{"name": "mostpop"}], "no model label"),
    ({"kind": "catalog", "source": "../../etc"}, [{"name": "mostpop"}], None),
    ({"kind": "sideways"}, [{"name": "mostpop"}], "kind"),
    ({"kind": "catalog", "attribute": "x" * 65}, [{"name": "mostpop"}], "attribute"),
])
def test_a_transfer_section_is_checked_when_the_file_is_read(section, models, match):
    raw = {"dataset": {"name": "kuairand"}, "transfer": section, "models": models}
    if match is None:  # scenario values are data, not paths: a catalog transfer ignores them
        assert parse_config(raw, "t.toml").transfer.kind == "catalog"
        return
    with pytest.raises(Exception, match=match) as info:
        parse_config(raw, "t.toml")
    assert "t.toml" in str(info.value)


def test_transfer_refuses_tuning_and_cold_start_and_an_unknown_scenario():
    raw = {"dataset": {"name": "kuairand"}, "transfer": {"kind": "catalog"}, "models": [{"name": "mostpop"}],
           "tuning": {"method": "grid", "space": {"mostpop": {}}}}
    with pytest.raises(Exception, match="drop \\[tuning\\]"):
        parse_config(raw, "t.toml")
    data = _big_and_small()
    tc = TransferConfig(kind="scenarios", source="a", targets=["zz"])
    with pytest.raises(Exception, match="scenario 'zz' has no training events"):
        run_transfer(data, tc, SplitConfig(kind="temporal"), [ModelSpec(name="multitask", params=FAST)])
    with pytest.raises(ValidationError):
        TransferConfig(kind="scenarios", source="a", targets=["b", "b"])
