"""Benchmark: the bandit policies' settings chosen on validation runs of the Emotify simulator (issue 16).

The defaults of `mosaicrec bandits` (ε 0.1, LinUCB α 0.5, Thompson v 0.3) were not tuned. Here each
family's setting is chosen by its mean like rate over validation seeds (100, 101, 102: other context
sequences and reward draws than the reported ones), and the chosen settings are then played on the
report seeds (0, 1, 2) beside random and greedy, as `mosaicrec bandits` does. The simulator is the same
for both (it is the environment, not data a policy learns from); only the seeds differ.

Writes benchmarks/results/bandit_tuning.json and .md (the table of the report seeds) and prints the
chosen settings in the form of src/mosaicrec/configs/bandits.toml.
Usage: python benchmarks/bandit_tuning.py [--rounds 5000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from mosaicrec.evaluation.bandit_sim import emotify_simulator, run_seeds, write_report
from mosaicrec.ranking.bandits import BanditConfig

RESULTS = Path(__file__).parent / "results"
GRID = {
    "epsilon-greedy": [{"epsilon": e} for e in (0.02, 0.05, 0.1, 0.2)],
    "linucb": [{"alpha": a} for a in (0.1, 0.25, 0.5, 1.0)],
    "thompson": [{"v": v, "propensity_samples": 10} for v in (0.1, 0.2, 0.3, 0.6)],
}
VALIDATION, REPORT = [100, 101, 102], [0, 1, 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5000)
    args = ap.parse_args()
    console = Console()
    t0 = time.perf_counter()
    env = emotify_simulator(console=console)
    candidates = {f"{fam} {json.dumps(p, sort_keys=True)}": BanditConfig(policy=fam, **p)
                  for fam, grid in GRID.items() for p in grid}
    curves = run_seeds(env, VALIDATION, args.rounds, candidates,
                       on_seed=lambda s, runs: console.print(f"validation seed {s} done"))
    score = {name: float(np.mean([r["reward"][-1] / args.rounds for r in runs])) for name, runs in curves.items()}
    chosen: dict[str, BanditConfig | None] = {"random": None, "greedy": BanditConfig(policy="epsilon-greedy",
                                                                                     epsilon=0.0)}
    validation = {}
    for fam in GRID:
        mine = {n: v for n, v in score.items() if n.startswith(fam + " ")}
        best = max(mine, key=mine.get)
        validation[fam] = mine
        label = {"epsilon-greedy": "ε-greedy", "linucb": "LinUCB", "thompson": "Thompson"}[fam]
        cfg = candidates[best]
        setting = {"epsilon-greedy": f"ε {cfg.epsilon:g}", "linucb": f"α {cfg.alpha:g}",
                   "thompson": f"v {cfg.v:g}"}[fam]
        chosen[f"{label} ({setting}, tuned)"] = cfg
        console.print(f"{fam}: " + "; ".join(f"{n.split(' ', 1)[1]} {v:.4f}" for n, v in mine.items())
                      + f" → {best}")
    report = run_seeds(env, REPORT, args.rounds, chosen,
                       on_seed=lambda s, runs: console.print(f"report seed {s} done"))
    RESULTS.mkdir(exist_ok=True)
    table = write_report(report, RESULTS, "bandit_tuning", "Bandit policies tuned on validation seeds, "
                         "played on the report seeds", time.perf_counter() - t0)
    (RESULTS / "bandit_tuning_validation.json").write_text(json.dumps(validation, indent=2))
    print(table)
    print("\n[policies]   # chosen on validation seeds " + " ".join(map(str, VALIDATION)))
    for label, cfg in chosen.items():
        print(f'"{label}" = ' + ('"random"' if cfg is None else
                                 "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in
                                                  {"policy": cfg.policy, **cfg.model_dump(exclude_defaults=True)}
                                                  .items()) + " }"))


if __name__ == "__main__":
    main()
