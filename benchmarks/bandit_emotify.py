"""Benchmark: bandit policies on an Emotify simulator, cumulative reward against random and greedy (issue 16).

The simulator (:func:`mosaicrec.evaluation.bandit_sim.emotify_environment`): each round draws a logged
listener context (age band, gender, mother tongue, chosen genre) in proportion to the log; the arms are
that genre's 100 clips, described by their YAMNet audio embedding (PCA to 8); a like is drawn with the
clip's like rate among listeners of that mother tongue (shrunk towards the clip's and the genre's rates).
Policies: random, greedy (the ridge model without exploration), ε-greedy (0.1), LinUCB (α 0.5) and linear
Thompson sampling (v 0.3), all on the same contexts and reward draws per seed. Mean ± std over seeds of the
like rate over all rounds and over the last 1,000, and the regret against the best clip of each round.

Writes benchmarks/results/bandit_emotify.json, .md and .png.
Usage: python benchmarks/bandit_emotify.py [--seeds 0 1 2] [--rounds 5000]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from mosaicrec.evaluation.bandit_sim import run_emotify

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rounds", type=int, default=5000)
    args = ap.parse_args()
    print(run_emotify(args.seeds, args.rounds, RESULTS, "bandit_emotify", Console()))


if __name__ == "__main__":
    main()
