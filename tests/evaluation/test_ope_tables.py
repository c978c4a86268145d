"""The OPE tables as the CLI makes them: the simulated one (known truth) end to end, and the Emotify one on
the real responses."""

from __future__ import annotations

import json

import pytest

from mosaicrec.evaluation.ope_tables import emotify_table, simulation_table


def test_simulation_table_ranks_the_estimators_as_theory_says():
    payload, table = simulation_table(replications=30)
    rows = {(r["logger"], r["target"], r["estimator"]): r for r in payload["rows"]}
    greedy = "ε-greedy ε=0"
    naive = rows[("uniform", greedy, "logged mean (no correction)")]
    for est in ("ips", "snips", "dr (reward model right)", "dr (reward model off by +0.2)"):
        r = rows[("uniform", greedy, est)]
        assert abs(r["bias"]) < 3 * r["std"] / 30 ** 0.5 + 0.01 and r["rmse"] < 0.3 * naive["rmse"], (est, r)
    # replay is unbiased under the uniform logger only
    assert abs(rows[("uniform", greedy, "replay")]["bias"]) < 0.01
    assert rows[("softmax", greedy, "replay")]["bias"] > 0.01
    assert rows[("softmax", greedy, "snips")]["rmse"] < rows[("softmax", greedy, "ips")]["rmse"]
    assert "| uniform | ε-greedy ε=0 | ips |" in table and table.count("\n") == len(payload["rows"]) + 4


@pytest.mark.shared
def test_emotify_table_checks_its_estimated_logger():
    payload, table = emotify_table([0])
    assert payload["presented"]  # the counts per clip that show the clips were not served uniformly
    check = payload["runs"]["logging"][0]
    # the estimated logger's IPS value is the held-out half's like rate: 8,407 responses, about 40% liked
    assert check["ips"]["value"] == pytest.approx(check["snips"]["value"], abs=0.01)
    assert 0.3 < check["ips"]["value"] < 0.5
    assert "replay" in payload["runs"]["greedy (popular)"][0] and "replay" not in payload["runs"]["random"][0]
    json.dumps(payload)  # what the CLI writes


def test_cli_ope_table_writes_json_and_markdown(tmp_path):
    from tests.test_cli import cli

    proc = cli("ope-table", "simulation", "--replications", "4", "--out", "o", cwd=tmp_path)
    assert "| softmax |" in proc.stdout
    assert json.loads((tmp_path / "o" / "ope_simulation.json").read_text())["replications"] == 4
    assert (tmp_path / "o" / "ope_simulation.md").read_text().startswith("Off-policy estimators")
    bad = cli("ope-table", "movielens", "--out", "o", cwd=tmp_path, check=False)
    assert bad.returncode == 1 and "unknown table 'movielens'" in bad.stderr


@pytest.mark.shared
def test_kuairand_table_checks_its_estimated_logger():
    from mosaicrec.evaluation.ope_tables import kuairand_table

    payload, table = kuairand_table([0], top=20)
    for label in ("click", "long_view"):
        runs = payload["runs"][label]
        check = runs["the estimated logger (check)"][0]
        # the estimated logger's value is the logged rate; its weights are all 1 (ESS = every row)
        assert check["ips"]["value"] == pytest.approx(payload["logged"][label], abs=1e-9)
        assert check["ess"] == pytest.approx(payload["presented"]["rounds"])
        # a policy fixed per tab-day: weights sum to the rows, so IPS = SNIPS
        pop = runs["popular (top 20)"][0]
        assert pop["ips"]["value"] == pytest.approx(pop["snips"]["value"], abs=1e-9) and pop["ess"] < check["ess"]
        bpr = runs["BPR (top 20)"][0]
        assert check["ess"] > bpr["ess"] > pop["ess"]  # personal lists match more logged rows than one list
    assert "**click** (logged mean" in table
