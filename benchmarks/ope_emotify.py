"""Benchmark: off-policy evaluation on Emotify's logged responses (issue 16).

Arms are the clips of the genre the listener chose (100 each); the reward is "liked"; the context is the
listener's age band, gender code and mother tongue (English, Russian, Dutch, other). Each response is a
round. The logging policy is not recorded: it is estimated from the counts, as p̂(clip | genre) = the
clip's share of its genre's responses (the game let a listener pick a genre and then served clips; the
counts per clip are far from uniform, so a uniform assumption would be wrong; see the printed counts).

Per seed, the responses are halved at random: target policies and the reward model are fitted on one half
and evaluated on the other by replay (deterministic policies only), IPS, SNIPS and DR (reward model: the
contextual like rate below), each with a bootstrap interval. Policies, each within the chosen genre:

* **random**: a uniformly random clip;
* **greedy (popular)**: the clip with the best like rate, shrunk to its genre's (prior weight 5);
* **greedy (contextual)**: the best like rate among listeners of the same mother tongue, shrunk to the clip's;
* **logging**: the estimated logger itself, as a check: its IPS value is the logged mean by construction.

Writes benchmarks/results/ope_emotify.json and .md.
The table is made by :mod:`mosaicrec.evaluation.ope_tables` (also `mosaicrec ope-table emotify`).
Usage: python benchmarks/ope_emotify.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from mosaicrec.evaluation.ope_tables import emotify_table, write_table

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    payload, table = emotify_table(args.seeds, Console())
    write_table(RESULTS, "emotify", payload, table)
    print(table)


if __name__ == "__main__":
    main()
