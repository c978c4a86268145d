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
Usage: python benchmarks/ope_emotify.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mosaicrec.data.datasets import resolve_source
from mosaicrec.evaluation.bandit_sim import shrunk_rates
from mosaicrec.evaluation.ope import BanditLog, evaluate_policy
from mosaicrec.evaluation.stats import fmt

RESULTS = Path(__file__).parent / "results"
PRIOR = 5.0


def responses() -> pd.DataFrame:
    src = resolve_source("emotify")
    ev = pd.read_parquet(src.events)
    items = pd.read_csv(src.items, dtype={"item_id": str})
    ev = ev.merge(items[["item_id", "genre"]], on="item_id")
    tongue = ev["listener_mother_tongue"].where(ev["listener_mother_tongue"].isin(["English", "Russian", "Dutch"]),
                                                "other")
    return pd.DataFrame({"clip": ev["item_id"].astype(int), "genre": ev["genre"], "tongue": tongue,
                         "liked": (ev["event_type"] == "like").astype(float)})


def rates(train: pd.DataFrame, clips: np.ndarray, genre_of: dict[int, str]) -> tuple[dict, dict]:
    """Shrunk like rates (the simulator's, :func:`shrunk_rates`): per clip (towards its genre; a clip
    without training responses has its genre's) and per (clip, tongue) (towards the clip)."""
    genre_rate, item_rate, tongue_rate = shrunk_rates(train, "clip", "genre", "tongue", prior=PRIOR)
    clip_rate = {c: float(item_rate.get(c, genre_rate[genre_of[c]])) for c in clips}
    ctx_rate = {(c, tg): float(v) for (tg, c), v in tongue_rate.items()}
    return clip_rate, ctx_rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    t0 = time.perf_counter()
    data = responses()
    counts = data.groupby(["genre", "clip"]).size()
    share = (counts / counts.groupby("genre").transform("sum")).to_dict()
    logger = np.array([share[(g, c)] for g, c in zip(data["genre"], data["clip"])])
    by_genre = {g: np.array(sorted(data.loc[data["genre"] == g, "clip"].unique())) for g in data["genre"].unique()}
    genre_of = {int(c): g for g, cs in by_genre.items() for c in cs}
    presented = {g: {"responses": int(counts[g].sum()), "clips": int(len(counts[g])), "min": int(counts[g].min()),
                     "median": float(counts[g].median()), "max": int(counts[g].max())} for g in by_genre}
    print("responses per clip, by genre:", presented)
    runs: dict[str, list[dict]] = {}
    for seed in args.seeds:
        rng = np.random.default_rng(seed)
        test_mask = rng.random(len(data)) < 0.5
        train, test = data[~test_mask], data[test_mask].reset_index(drop=True)
        p_test = logger[test_mask]
        clip_rate, ctx_rate = rates(train, np.concatenate(list(by_genre.values())), genre_of)
        log = BanditLog(test["clip"].to_numpy(), test["liked"].to_numpy(), p_test)

        def q(clip: int, tongue: str) -> float:
            return ctx_rate.get((clip, tongue), clip_rate[clip])

        # per test round: every clip of its genre, the reward model and each policy's distribution over them
        rows = {name: ([], [], []) for name in ("random", "greedy (popular)", "greedy (contextual)", "logging")}
        q_logged = np.array([q(c, tg) for c, tg in zip(test["clip"], test["tongue"])])
        for c, g, tg in zip(test["clip"], test["genre"], test["tongue"]):
            arms = by_genre[g]
            qs = np.array([q(a, tg) for a in arms])
            pop = np.array([clip_rate[a] for a in arms])
            at = int(np.searchsorted(arms, c))
            dists = {"random": np.full(len(arms), 1 / len(arms)),
                     "greedy (popular)": np.eye(len(arms))[np.argmax(pop)],
                     "greedy (contextual)": np.eye(len(arms))[np.argmax(qs)],
                     "logging": np.array([share[(g, a)] for a in arms])}
            for name, pi in dists.items():
                rows[name][0].append(pi[at])
                rows[name][1].append(float(pi @ qs))
                rows[name][2].append(arms[np.argmax(pi)] if pi.max() == 1 else -1)
        for name, (probs, q_target, actions) in rows.items():
            deterministic = name.startswith("greedy")
            est = evaluate_policy(log, target_probs=np.array(probs),
                                  target_actions=np.array(actions) if deterministic else None,
                                  q_logged=q_logged, q_target=np.array(q_target), n_boot=200, seed=seed)
            runs.setdefault(name, []).append({k: e.to_dict() for k, e in est.items()})
        print(f"seed {seed}: logged mean {test['liked'].mean():.4f}; "
              + "; ".join(f"{n} DR {runs[n][-1]['dr']['value']:.4f}" for n in rows))
    seconds = time.perf_counter() - t0
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ope_emotify.json").write_text(json.dumps({"presented": presented, "runs": runs, "seeds": args.seeds,
                                                          "seconds": seconds}, indent=2))
    names = ["replay", "ips", "snips", "dr"]
    lines = [f"Emotify: policies' like rate estimated off-policy from held-out responses, {len(args.seeds)} seeds "
             f"(mean ± std of the estimate; [mean 95% bootstrap interval]), {seconds:.0f} s.", "",
             "| policy | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for name, per_seed in runs.items():
        cells = []
        for e in names:
            got = [r[e] for r in per_seed if e in r]
            if not got:
                cells.append("—")
                continue
            v = [g["value"] for g in got]
            cells.append(f"{fmt(float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else None)} "
                         f"[{np.mean([g['low'] for g in got]):.3f}, {np.mean([g['high'] for g in got]):.3f}]"
                         + (f" ({int(np.mean([g['rows'] for g in got]))} rows)" if e == "replay" else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    (RESULTS / "ope_emotify.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
