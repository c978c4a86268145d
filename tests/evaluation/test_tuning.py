"""Honest evaluation: validation carved out of training only, tuning on it, seeds aggregated, paired tests."""

import numpy as np
import pytest

from mosaicrec.data.splits import SplitConfig, cold_item_split, random_holdout, validation_split
from mosaicrec.errors import ConfigError
from mosaicrec.evaluation import runner as R
from mosaicrec.evaluation import tasks as T
from mosaicrec.evaluation.runner import ColdStartConfig, run_experiment
from mosaicrec.evaluation.stats import mean_std, paired
from mosaicrec.evaluation.tuning import ParamRange, TuningConfig, tune
from mosaicrec.models.registry import ModelSpec
from tests.conftest import planted, planted_content
from tests.models.test_multimodal import _dataset


def _pairs(x):
    return set(zip(x.users.tolist(), x.items.tolist()))


@pytest.mark.parametrize("kind", ["random", "leave_last_out", "temporal", "cold_items", "cold_users"])
def test_validation_is_carved_from_training_only(kind):
    x = planted(per_user=12)
    train, test = random_holdout(x, 0.2, seed=0)
    fit, val, support = validation_split(train, kind, 0.25, seed=0)
    parts = [fit, val] + ([support] if support is not None else [])
    assert sum(p.n_events for p in parts) == train.n_events  # a partition of train …
    assert all(_pairs(p) <= _pairs(train) for p in parts)
    assert not any(_pairs(p) & _pairs(test) for p in parts)  # … that never holds a test event
    if kind == "cold_items":  # pseudo-new items: none of them is in the fit part
        assert not np.isin(np.unique(val.items), fit.items).any()
    if kind == "cold_users":
        assert not np.isin(np.unique(val.users), fit.users).any()
        assert set(np.unique(support.users)) == set(np.unique(val.users))


def test_tuning_never_reads_the_test_part(monkeypatch):
    """Every fit during tuning sees training events only, and is scored on validation events carved from
    training; the test part is fitted for and scored once per scenario and seed, after the choice."""
    x = planted(per_user=12)
    data, content = _dataset(x), planted_content(x)
    cold = ColdStartConfig(items=0.25, users=0.25)
    fits = []
    real_fit = R._fit
    monkeypatch.setattr(R, "_fit", lambda name, params, task, content: (fits.append(task),
                                                                         real_fit(name, params, task, content))[1])
    tuning = TuningConfig(method="grid", space={"ease": {"reg": [1.0, 10.0, 100.0]}})
    result = run_experiment(data, SplitConfig(), [ModelSpec(name="ease")], content=content, cold_start=cold,
                            tuning=tuning, seeds=[3, 4])
    # per seed: warm 3 grid points then the final fit; new items and new users 3 grid points on each of 3
    # pseudo-new folds, then the final fit
    assert len(fits) == 2 * ((3 + 1) + 2 * (3 * 3 + 1))
    for seed, seed_fits in zip((3, 4), (fits[:24], fits[24:])):
        tasks = {t.name: t for t in T.scenario_tasks(data, SplitConfig(seed=seed), cold, content, lambda h: None)}
        finals = 0
        for task in seed_fits:
            final = tasks[task.name]
            if _pairs(task.test) == _pairs(final.test):
                finals += 1
                continue
            held = _pairs(final.test) | (_pairs(final.support) if final.support is not None else set())
            assert not (_pairs(task.train) | _pairs(task.test)) & held
        assert finals == 3
    for run in result.rows[0].runs:
        assert run["chosen"]["reg"] in (1.0, 10.0, 100.0) and run["trials"] == 3
        assert len(run["validation_folds"]) == (1 if run["scenario"] == "warm" else 3)
        assert run["validation"] == pytest.approx(np.mean(run["validation_folds"]))
    folds = [t for t in fits[:24] if t.name == "new items"][:3]  # the three folds of the first grid point
    assert len({frozenset(_pairs(t.test)) for t in folds}) == 3  # different pseudo-new items in each


def test_each_validation_fit_holds_no_test_event():
    x = planted(per_user=12)
    data, content = _dataset(x), planted_content(x)
    cold = ColdStartConfig(items=0.25, users=0.25)
    cfg = SplitConfig(seed=5, validation_fraction=0.25)
    tasks = T.scenario_tasks(data, cfg, cold, content, lambda h: None)
    for task in tasks:
        val = T.validation_task(task, cfg, cold, lambda h: None)
        held = _pairs(task.test) | (_pairs(task.support) if task.support is not None else set())
        assert not _pairs(val.train) & held and not _pairs(val.test) & held
        assert _pairs(val.train) | _pairs(val.test) <= _pairs(task.train_explicit or task.train) | _pairs(task.train)
        if task.name == "new items":  # pseudo-new items are items of the training part, all candidates
            assert not np.isin(val.candidates, task.candidates).any()
            assert not np.isin(val.candidates, val.train.items).any()
        if task.name == "new users":
            assert not np.isin(val.users, task.users).any()


def test_new_item_candidates_are_all_held_out_items_with_or_without_a_positive():
    """Ranking only the held-out items that have a positive test event would tell the model which they
    are; every held-out item is a candidate."""
    x = planted(per_user=12)
    weights = np.where(np.isin(x.items, [3, 7, 45]), 1.0, 5.0).astype(np.float32)  # three disliked items
    from dataclasses import replace
    x = replace(x.with_weights(weights))
    data = _dataset(x)
    tasks = T.scenario_tasks(data, SplitConfig(seed=0, rating_threshold=4), ColdStartConfig(items=0.5), planted_content(x),
                     lambda h: None)
    task = tasks[1]
    held = set(np.unique(cold_item_split(x, 0.5, 0)[1].items).tolist())
    assert set(task.candidates.tolist()) == held
    only_negative = held - set(np.unique(task.test.items).tolist())
    assert only_negative and only_negative <= {3, 7, 45}


def test_seeds_are_aggregated_as_mean_and_std():
    x = planted(per_user=12)
    specs = [ModelSpec(name="mostpop"), ModelSpec(name="als", params={"iterations": 3, "factors": 8})]
    result = run_experiment(_dataset(x), SplitConfig(), specs, seeds=[0, 1, 2], baseline="mostpop")
    als = result.rows[1]
    values = [r["metrics"]["ndcg@10"] for r in als.runs]
    assert [r["seed"] for r in als.runs] == [0, 1, 2] and len(set(values)) > 1  # the splits differ
    assert als.params["seed"] == 0  # each run's seed reaches the model (its first run is kept)
    assert als.metrics["ndcg@10"] == pytest.approx(np.mean(values))
    assert als.std["ndcg@10"] == pytest.approx(np.std(values, ddof=1))
    d = als.paired["warm"]["ndcg@10"]
    assert d["diff"] > 0 and d["p_ttest"] < 0.01 and d["wins"] > d["losses"]
    assert d["n"] == sum(len(v) for v in als.per_user[("warm", "ndcg@10")])
    assert result.split["seeds"] == [0, 1, 2]


def test_mean_std_and_paired_statistics():
    mean, std = mean_std([{"a": 1.0, "b": 2.0}, {"a": 3.0}])
    assert mean == {"a": 2.0, "b": 2.0} and std["a"] == pytest.approx(np.sqrt(2.0)) and std["b"] == 0.0
    rng = np.random.default_rng(0)
    base = [rng.random(200) for _ in range(3)]
    better = [b + 0.05 + 0.01 * rng.standard_normal(200) for b in base]
    d = paired(better, base)
    assert d["diff"] == pytest.approx(0.05, abs=0.005) and d["ci_low"] > 0 and d["p_sign"] < 1e-6
    same = paired(base, base)
    assert same["diff"] == 0.0 and same["p_ttest"] == 1.0 and same["ties"] == 600
    with pytest.raises(ValueError, match="same users"):
        paired([np.zeros(3)], [np.zeros(4)])


def test_grid_and_optuna_find_the_best_value_and_optuna_prunes():
    def objective(params, budget):
        return -(np.log10(params["reg"]) - 2.0) ** 2 + (0.0 if budget == 1.0 else -params["reg"] / 1e4)

    grid = tune({"reg": ParamRange(low=1.0, high=1e4, log=True)}, objective,
                TuningConfig(method="grid", grid_points=5))
    assert grid.best_params == {"reg": 100.0} and len(grid.trials) == 5
    study = tune({"reg": ParamRange(low=1.0, high=1e4, log=True)}, objective,
                 TuningConfig(method="optuna", trials=25), seed=0, epoch_trained=True)
    assert abs(np.log10(study.best_params["reg"]) - 2.0) < 0.5
    assert any(t["state"] == "pruned" for t in study.trials)
    cat = tune({"modalities": [["text"], ["text", "image"]]}, lambda p, b: len(p["modalities"]),
               TuningConfig(trials=6), seed=0)
    assert cat.best_params == {"modalities": ["text", "image"]}


def test_config_takes_seeds_tuning_and_baseline_and_refuses_bad_ones():
    from mosaicrec.config import parse_config

    base = {"dataset": {"name": "movielens-100k"}, "models": [{"name": "ease"}, {"name": "mostpop"}]}
    cfg = parse_config({**base, "seeds": [0, 1, 2], "baseline": "mostpop",
                        "tuning": {"method": "grid", "space": {"ease": {"reg": {"low": 10, "high": 1000, "log": True}}}}})
    assert cfg.seeds == [0, 1, 2] and cfg.tuning.space_for("ease", "ease")["reg"].grid(3) == [10.0, 100.0, 1000.0]
    with pytest.raises(ConfigError, match="baseline 'bpr'"):
        parse_config({**base, "baseline": "bpr"})
    with pytest.raises(ConfigError, match="tuning metric 'ndcg@7'"):
        parse_config({**base, "tuning": {"metric": "ndcg@7"}})
    with pytest.raises(ConfigError, match="low < high"):
        parse_config({**base, "tuning": {"space": {"ease": {"reg": {"low": 5, "high": 1}}}}})
    with pytest.raises(ConfigError, match="no model label"):
        parse_config({**base, "tuning": {"space": {"nosuch": {"factors": [8]}}}})
    with pytest.raises(ConfigError, match="seeds"):
        parse_config({**base, "seeds": []})


def test_new_user_prior_settings_are_tuned_in_the_new_user_scenario_only():
    """They never act on trained users: tuning them in the warm or new-item runs spends trials for nothing."""
    cfg = TuningConfig(space={"EASE": {"reg": [10, 100], "history_popularity": [0.0, 1.0],
                                       "onboarding_events": [3, 5]}})
    assert set(cfg.space_for("EASE", "ease", "warm")) == {"reg"}
    assert set(cfg.space_for("EASE", "ease", "new items")) == {"reg"}
    assert set(cfg.space_for("EASE", "ease", "new users")) == {"reg", "history_popularity", "onboarding_events"}


def test_new_item_generators_tune_their_own_settings_in_the_new_item_scenario_only():
    """A warm fit of dropoutnet, clcrec or aldi trains no generator: only ALS's settings act there; the
    same names on another model (a hybrid's lr) stay in its warm space."""
    cfg = TuningConfig()
    for name in ("dropoutnet", "clcrec", "aldi"):
        assert set(cfg.space_for(name, name, "warm")) == {"regularization", "alpha"}
        assert {"lr", "weight_decay", "regularization", "alpha"} <= set(cfg.space_for(name, name, "new items"))
    assert "lr" in cfg.space_for("hybrid", "hybrid", "warm")


def test_sparse_slices_are_the_rows_and_items_with_few_training_events():
    from mosaicrec.evaluation.protocol import EvaluationConfig, evaluate_ranking

    x = planted(n_users=120, per_user=12)
    keep = ~((x.users % 3 == 0) & (np.arange(x.n_events) % 12 >= 6))  # a third of users keep half their events
    x = x.subset(keep)
    cfg = EvaluationConfig(ks=[10, 20], sparse_users=6, sparse_items=12)
    result = run_experiment(_dataset(x), SplitConfig(seed=0), [ModelSpec(name="itemknn")], cfg)
    row = result.rows[0]
    assert set(row.cold) == {"users ≤6", "items ≤12"}
    train, test = random_holdout(x, 0.2, seed=0)
    from mosaicrec.models import create
    model = create("itemknn").fit(train)
    full = evaluate_ranking(model, test, exclude=train.binary, config=cfg)
    few = np.diff(train.binary.indptr)[full.users] <= 6
    assert 0 < few.sum() < len(few)
    assert row.cold["users ≤6"]["ndcg@10"] == pytest.approx(full.per_user["ndcg@10"][few].mean())
    counts = np.bincount(train.items, minlength=x.n_items)
    rare = test.subset(counts[test.items] <= 12)
    assert 0 < rare.n_events < test.n_events
    sliced = evaluate_ranking(model, rare, exclude=train.binary, config=cfg,
                              candidates=np.flatnonzero(counts <= 12))
    assert row.cold["items ≤12"]["recall@20"] == pytest.approx(sliced.metrics["recall@20"])


def test_start_from_gives_each_neural_start_the_bpr_chosen_in_the_same_seed():
    """A neural model's BPR start follows the BPR tuned on validation in the same seed and scenario: the
    start it keeps when no epoch beats it is then the tuned BPR, not BPR at its defaults."""
    x = planted(per_user=12)
    content = planted_content(x)
    neural = {"dim": 8, "epochs": 1, "batch_size": 256, "early_stopping": 0}
    specs = [ModelSpec(name="bpr", label="BPR", params={"factors": 8, "iterations": 5}),
             ModelSpec(name="hybrid", params=neural, start_from="BPR"),
             ModelSpec(name="vbpr", params={**neural, "init_iterations": 5})]
    tuning = TuningConfig(method="grid", models=["BPR"],
                          space={"BPR": {"learning_rate": [0.003, 0.07], "regularization": [0.2, 0.0001]}})
    result = run_experiment(_dataset(x), SplitConfig(), specs, content=content, tuning=tuning,
                            keep_models=True)
    bpr, hybrid, vbpr = result.rows
    chosen = bpr.runs[0]["chosen"]
    assert chosen != {"learning_rate": 0.01, "regularization": 0.01}  # the grid holds no default
    assert hybrid.fitted.config.init_learning_rate == chosen["learning_rate"]
    assert hybrid.fitted.config.init_regularization == chosen["regularization"]
    assert hybrid.fitted.config.init_iterations == 5  # untuned settings follow too
    assert vbpr.fitted.config.init_learning_rate == 0.01  # without start_from: BPR's defaults


def test_start_from_is_refused_unless_it_names_an_earlier_bpr():
    from mosaicrec.config import parse_config

    data = {"dataset": {"name": "movielens-100k"}, "content": {"encoders": {"text": "minilm"}}}
    ok = parse_config({**data, "models": [{"name": "bpr"}, {"name": "hybrid", "start_from": "bpr"}]})
    assert ok.models[1].start_from == "bpr"
    for models, match in [
        ([{"name": "hybrid", "start_from": "bpr"}, {"name": "bpr"}], "listed before it"),
        ([{"name": "ease"}, {"name": "hybrid", "start_from": "ease"}], "'bpr' model"),
        ([{"name": "bpr"}, {"name": "hybrid", "start_from": "nosuch"}], "'nosuch'"),
        ([{"name": "bpr"}, {"name": "ease", "start_from": "bpr"}], "no BPR start"),
        ([{"name": "bpr"}, {"name": "hybrid", "start_from": "bpr", "params": {"init_learning_rate": 0.05}}],
         "either start_from or"),
    ]:
        with pytest.raises(ConfigError, match=match):
            parse_config({**data, "models": models})
    with pytest.raises(ConfigError, match="listed before it"):
        run_experiment(_dataset(planted()), SplitConfig(), [ModelSpec(name="hybrid", start_from="BPR")])


def test_every_built_in_space_names_parameters_its_model_has_within_their_bounds():
    from mosaicrec.evaluation.tuning import DEFAULT_SPACES, ParamRange, TuningConfig
    from mosaicrec.models import create
    from mosaicrec.models.registry import MODELS

    for name in DEFAULT_SPACES:
        space = TuningConfig(method="grid").space_for(name, name)
        assert set(space) <= set(MODELS[name].Config.model_fields), name
        for param, values in space.items():  # each end of a range, each choice, is a valid setting
            for v in ([values.low, values.high] if isinstance(values, ParamRange) else values):
                create(name, {param: int(v) if isinstance(values, ParamRange) and values.integer else v})


def test_positives_first_holds_out_each_users_last_positive_and_nothing_after_it():
    """An impression log's last event is often a skip: leave-last-out after the threshold would hold it out
    and then drop it, leaving the user untested. With ``positives_first`` the held-out event is the user's
    last positive, and the training part holds only positives, all earlier than it."""
    x = planted(per_user=12)
    rng = np.random.default_rng(0)
    weights = rng.choice(np.array([0.0, 1.0], np.float32), x.n_events)
    order = np.lexsort((np.arange(x.n_events), x.timestamps, x.users))
    last = order[np.r_[x.users[order][1:] != x.users[order][:-1], True]]
    weights[last] = 0.0  # every user's latest event is a skip
    data = _dataset(x.with_weights(weights))
    plain = T.scenario_tasks(data, SplitConfig(kind="leave_last_out", rating_threshold=1), ColdStartConfig(), None,
                     lambda h: None)[0]
    assert plain.test.n_events == 0  # the old behaviour: every held-out event was a skip
    cfg = SplitConfig(kind="leave_last_out", rating_threshold=1, positives_first=True)
    task = T.scenario_tasks(data, cfg, ColdStartConfig(), None, lambda h: None)[0]
    pos = weights >= 1
    counts = np.bincount(x.users[pos], minlength=x.n_users)
    assert np.array_equal(np.sort(task.test.users), np.flatnonzero(counts >= 2))  # one test event each
    assert np.all(task.train_explicit.weights >= 1) and np.all(task.test.weights >= 1)
    for u, t in zip(task.test.users, task.test.timestamps):
        user_pos = pos & (x.users == u)
        assert t == x.timestamps[user_pos].max()
        assert np.all(task.train.timestamps[task.train.users == u] <= t)
    with pytest.raises(ValueError, match="positives_first needs a rating_threshold"):
        SplitConfig(positives_first=True)


def test_a_choice_on_the_edge_is_flagged_and_widening_searches_past_it():
    from mosaicrec.evaluation.tuning import edges_of

    def rising(params, budget):  # best far above the range: every search ends at its top
        return -(np.log10(params["reg"]) - 3.0) ** 2

    space = {"reg": ParamRange(low=1.0, high=10.0, log=True)}
    flat = tune(space, rising, TuningConfig(method="grid", grid_points=4))
    assert flat.best_params == {"reg": 10.0} and "reg" in flat.edges and "high edge of 1..10" in flat.edges["reg"]
    assert flat.widened == 0 and flat.spread["max"] == flat.best_value > flat.spread["median"] >= flat.spread["min"]
    wide = tune(space, rising, TuningConfig(method="grid", grid_points=4, widen=3))
    # 1..100, 1..1000 (1000 on the top again), 1..10000: 1000 is inside
    assert wide.best_params == {"reg": 1000.0} and wide.widened == 3 and not wide.edges
    assert len(wide.trials) == 4 * 4
    found = tune(space, rising, TuningConfig(method="optuna", trials=12, widen=2), seed=0)
    assert found.best_params["reg"] > 50 and found.widened == 2  # two rounds past 10: up to 1000
    inner = {"reg": ParamRange(low=1.0, high=1e6, log=True), "k": [10, 50, 200], "kind": ["a", "b", "c"],
             "alpha": ParamRange(low=0.0, high=1.0)}
    got = edges_of(inner, {"reg": 1e3, "k": 200, "kind": "c", "alpha": 0.02})
    assert set(got) == {"k", "alpha"} and "low edge" in got["alpha"] and "high edge" in got["k"]


def test_the_report_and_the_log_flag_a_choice_on_the_edge(monkeypatch, caplog):
    from mosaicrec.evaluation.report import markdown

    data = _dataset(planted(per_user=12))
    # a validation score that rises with reg: the top of the grid wins, on its edge
    monkeypatch.setattr(R, "_objective", lambda *a, **k: lambda params, budget: float(params["reg"]))
    tuning = TuningConfig(method="grid", space={"ease": {"reg": [0.1, 1.0, 10.0]}})
    with caplog.at_level("WARNING", logger="mosaicrec.evaluation"):
        result = run_experiment(data, SplitConfig(), [ModelSpec(name="ease")], tuning=tuning, seeds=[0])
    run = result.rows[0].runs[0]
    assert run["chosen"] == {"reg": 10.0} and "high edge of [0.1, 1, 10]" in run["edges"]["reg"]
    assert run["validation_spread"] == {"min": 0.1, "median": 1.0, "max": 10.0, "std": pytest.approx(4.47, abs=0.01)}
    text = markdown(result)
    assert "reg=10 **edge**" in text and "0.1000 / 1.0000 / 10.0000" in text
    assert "**Not done tuning**: 1 choice(s) on an edge" in text
    assert "tuning ease (warm, seed 0): reg=10 is at the high edge" in caplog.text
    monkeypatch.setattr(R, "_objective", lambda *a, **k: lambda params, budget: -abs(params["reg"] - 1.0))
    inside = run_experiment(data, SplitConfig(), [ModelSpec(name="ease")], tuning=tuning, seeds=[0])
    assert inside.rows[0].runs[0]["edges"] == {} and "Not done tuning" not in markdown(inside)


def test_a_content_set_stays_only_when_it_pays_beyond_its_spread_across_folds():
    from mosaicrec.evaluation.tuning import pay_or_leave

    # per-fold validation: text pays in every fold, genres pays a little but noisily, posters costs a little
    effect = {"text": np.array([0.05, 0.06, 0.05]), "genres": np.array([0.004, -0.006, 0.005]),
              "posters": np.array([-0.002, -0.001, -0.003])}
    asked = []

    def fold_scores(sets):
        asked.append(tuple(sets))
        return list(0.1 + sum(effect[m] for m in sets))

    kept, verdicts = pay_or_leave(["text", "genres", "posters"], fold_scores)
    assert kept == ["text"]
    by = {v.modality: v for v in verdicts}
    assert by["text"].kept and not by["posters"].kept and not by["genres"].kept
    assert by["posters"].gain == pytest.approx(-0.002) and by["genres"].spread > by["genres"].gain
    assert "left out (validation gain -0.0020" in by["posters"].sentence()
    steady = {"text": np.array([0.05, 0.06, 0.05]), "genres": np.array([0.01, 0.012, 0.011])}
    kept, verdicts = pay_or_leave(["text", "genres"], lambda sets: list(sum(steady[m] for m in sets)))
    assert kept == ["text", "genres"] and all(v.kept for v in verdicts)
    unread = []  # content that no score reads (a warm list made by the collaborative part alone)
    kept, verdicts = pay_or_leave(["text", "genres", "posters"], lambda sets: unread.append(sets) or [0.2, 0.3])
    assert kept == ["text", "genres", "posters"] and all(v.kept and v.gain == 0 for v in verdicts)
    assert len(unread) == 1 + 3  # one round, then nothing to judge


def test_tuning_leaves_out_the_content_that_does_not_pay_and_the_report_says_so():
    from mosaicrec.data.content import ItemContent
    from mosaicrec.evaluation.report import markdown

    x = planted(per_user=12)
    data, content = _dataset(x), planted_content(x)
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((content.n_items, 16)).astype(np.float32)  # says nothing about tastes
    name = content.modalities[0]
    both = ItemContent(content.item_ids, {name: content.features[name], "noise": noise},
                       {name: content.masks[name], "noise": np.ones(content.n_items, bool)})
    tuning = TuningConfig(method="grid", space={"content-map": {"map_reg": [1.0]}})
    result = run_experiment(data, SplitConfig(), [ModelSpec(name="content-map", params={"iterations": 3})],
                            content=both, cold_start=ColdStartConfig(items=0.25), tuning=tuning, seeds=[0])
    runs = {r["scenario"]: r for r in result.rows[0].runs}
    verdicts = {v["modality"]: v for v in runs["new items"]["content"]}
    assert verdicts[name]["kept"] and not verdicts["noise"]["kept"] and verdicts["noise"]["folds"] == 3
    assert result.rows[0].runs and "Content that pays or leaves" in markdown(result)
    assert "noise (" in markdown(result).split("Content that pays or leaves")[1]
