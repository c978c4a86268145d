"""Reports say what was measured: error bars over seeds, the table's own metrics in the plot, p-values that
are never printed as 0, peak memory that sees numba's and numpy's allocations, and the diversity column."""

import numpy as np
import pytest

from mosaicrec.data.datasets import frames_to_dataset
from mosaicrec.data.splits import SplitConfig
from mosaicrec.evaluation.memory import PeakMemory
from mosaicrec.evaluation.protocol import EvaluationConfig
from mosaicrec.evaluation.report import _columns, markdown, plot_metrics, write_reports
from mosaicrec.evaluation.runner import run_experiment
from mosaicrec.evaluation.stats import fmt_p
from mosaicrec.models.registry import ModelSpec
from tests.conftest import planted


@pytest.fixture(scope="module")
def result():
    import pandas as pd

    x = planted(n_users=200, per_user=12)
    events = pd.DataFrame({"user_id": x.user_ids[x.users], "item_id": x.item_ids[x.items],
                           "timestamp": np.arange(x.n_events), "event_type": "view", "weight": 1.0, "context": "{}"})
    genres = [{"genres": [f"g{int(i) % 4}"]} for i in range(x.n_items)]
    items = pd.DataFrame({"item_id": x.item_ids, "title": x.item_ids, "texts": [{}] * x.n_items, "image": None,
                          "audio": None, "attributes": genres})
    data = frames_to_dataset("planted", {"events": events, "items": items})
    models = [ModelSpec(name="mostpop", label="pop"), ModelSpec(name="ease", params={"reg": 10.0})]
    return run_experiment(data, SplitConfig(seed=1), models, EvaluationConfig(ks=[10, 20]), seeds=[0, 1],
                          baseline="pop")


def test_p_values_below_the_printed_digits_say_so():
    assert fmt_p(3e-127) == "< 1e-4" and fmt_p(0.0) == "< 1e-4" and fmt_p(0.0213) == "0.021"
    assert fmt_p(float("nan")) == "—"


def test_the_report_prints_tiny_p_values_and_a_diversity_column(result):
    md = markdown(result)
    assert "< 1e-4" in md  # EASE against popularity on planted groups: far below 1e-4
    assert "| 0 |" not in md and "| 0 | 0 |" not in md
    assert "diversity@10" in _columns(result)
    assert "ease" in md and "±" in md  # two seeds: mean ± std


def test_the_plot_shows_the_tables_metrics_with_error_bars(result, tmp_path):
    metrics = plot_metrics(result)
    assert metrics and all(m in _columns(result) for m in metrics)
    assert metrics == ["ndcg@10", "recall@10"]
    out = write_reports(result, tmp_path)
    assert (out / "plot.png").stat().st_size > 10_000
    import matplotlib.pyplot as plt

    calls = []
    orig = plt.Axes.bar

    def spy(self, *args, **kwargs):
        calls.append(kwargs.get("yerr"))
        return orig(self, *args, **kwargs)

    plt.Axes.bar = spy
    try:
        write_reports(result, tmp_path / "again")
    finally:
        plt.Axes.bar = orig
    assert calls and all(e is not None and max(e) > 0 for e in calls)  # the spread over the two seeds


def test_peak_memory_sees_allocations_outside_pythons_allocator():
    with PeakMemory() as peak:
        block = np.ones(60 * 2**20 // 8)  # 60 MB from numpy's allocator
        block.sum()
    assert 45 < peak.mb < 200
    del block


def test_peak_memory_of_a_fit_is_in_the_report(result):
    for row in result.rows:
        assert row.peak_memory_mb == row.peak_memory_mb  # measured for every model, torch ones included
