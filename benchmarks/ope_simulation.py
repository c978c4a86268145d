"""Benchmark: off-policy estimators on simulated logs whose true policy value is known (issue 16).

Each replication draws a bandit problem (2,000 rounds, 10 actions, 5 context features, Bernoulli rewards
with logit x · θ_a) and a log from a logger: uniform, or a softmax over noisy true scores (it favours good
actions without knowing them). The target policy is ε-greedy on the true scores (ε = 0: greedy). Every
estimator of :mod:`mosaicrec.evaluation.ope` is scored by its error against the true value: bias, standard
deviation and RMSE over the replications. DR gets a reward model that is right (the true means) or off by
+0.2. The baseline is what a log says without any correction: its mean reward (the logger's own value).

Writes benchmarks/results/ope_simulation.json and .md.
The table is made by :mod:`mosaicrec.evaluation.ope_tables` (also `mosaicrec ope-table simulation`).
Usage: python benchmarks/ope_simulation.py [--replications 200]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from mosaicrec.evaluation.ope_tables import simulation_table, write_table

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replications", type=int, default=200)
    args = ap.parse_args()
    payload, table = simulation_table(args.replications, Console())
    write_table(RESULTS, "simulation", payload, table)
    print(table)


if __name__ == "__main__":
    main()
