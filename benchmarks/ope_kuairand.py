"""Benchmark: off-policy evaluation on KuaiRand's impressions (issue 16).

The log: every impression of the last fifth of the slice (by time), with its click and long-view outcome.
The first four fifths train the targets and the reward model. The logging policy (Kuaishou's recommender)
is not recorded and this slice has no randomly exposed videos (``is_rand`` is 0 throughout), so it is
estimated the way Emotify's is: p̂(video | tab, day) = the video's share of that surface's impressions that
day. That is the logger's marginal over users; the real logger is personal, so every estimate here
carries the error of that model, and the numbers rank policies under a stated assumption rather than
measure them. The check that it is at least self-consistent: the estimated logger's own IPS value must be
the logged mean.

Each round's arms are the videos shown on its tab that day. Targets pick one of them:

* **random**: uniformly;
* **popular (top 50)**: uniformly among the 50 with the best training rate on that tab (shrunk);
* **BPR (top 50)**: uniformly among the user's 50 best by a BPR fitted on the training fifths (users BPR
  never saw get the popular policy), one per seed;
* **the estimated logger**: the check.

Estimators: IPS, SNIPS and DR (reward model: the video's training rate on the tab, shrunk to the video's
and that to the overall rate); 95% bootstrap intervals over impressions; the effective sample size
(Σw)² / Σw² says how many logged rows the estimate really rests on. Mean ± std over seeds.

Writes benchmarks/results/ope_kuairand.json and .md.
The table is made by :mod:`mosaicrec.evaluation.ope_tables` (also `mosaicrec ope-table kuairand`).
Usage: python benchmarks/ope_kuairand.py [--seeds 0 1 2] [--top 50]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from mosaicrec.evaluation.ope_tables import kuairand_table, write_table

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--top", type=int, default=50)
    args = ap.parse_args()
    payload, table = kuairand_table(args.seeds, args.top, Console())
    write_table(RESULTS, "kuairand", payload, table)
    print(table)


if __name__ == "__main__":
    main()
