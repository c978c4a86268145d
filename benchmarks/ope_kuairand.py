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
Usage: python benchmarks/ope_kuairand.py [--seeds 0 1 2] [--top 50]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mosaicrec.data import load_dataset
from mosaicrec.data.splits import SplitConfig, split
from mosaicrec.evaluation.bandit_sim import shrunk_rates
from mosaicrec.evaluation.ope import BanditLog, evaluate_policy
from mosaicrec.evaluation.stats import fmt
from mosaicrec.models import create

RESULTS = Path(__file__).parent / "results"
LABELS = ("click", "long_view")
PRIOR = 20.0


def frame(x) -> pd.DataFrame:
    return pd.DataFrame({"user": x.users, "item": x.items, "ts": x.timestamps,
                         "tab": np.asarray(x.context["scenario"]).astype(str),
                         "day": pd.to_datetime(x.timestamps, unit="ms").strftime("%Y-%m-%d"),
                         **{lab: np.asarray(x.context[lab]).astype(int) for lab in LABELS}})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--top", type=int, default=50)
    args = ap.parse_args()
    t0 = time.perf_counter()
    data = load_dataset("kuairand")
    train_x, test_x = split(data.interactions, SplitConfig(kind="temporal", test_fraction=0.2))
    train, test = frame(train_x), frame(test_x)
    # the logger's estimate: each video's share of its (tab, day)'s impressions in the evaluated log
    counts = test.groupby(["tab", "day", "item"]).size()
    share = counts / counts.groupby(level=["tab", "day"]).transform("sum")
    test["p"] = share.reindex(pd.MultiIndex.from_frame(test[["tab", "day", "item"]])).to_numpy()
    arms = {k: g.index.get_level_values("item").to_numpy() for k, g in share.groupby(level=["tab", "day"])}
    arm_p = {k: g.to_numpy() for k, g in share.groupby(level=["tab", "day"])}
    sizes = np.array([len(a) for a in arms.values()])
    presented = {"rounds": int(len(test)), "tab_days": int(len(arms)), "arms_median": float(np.median(sizes)),
                 "arms_max": int(sizes.max()), "top_share_median": float(np.median([p.max() for p in arm_p.values()]))}
    print("evaluated log:", presented, flush=True)
    engaged = train_x.subset(train_x.weights >= 1)
    models = {seed: create("bpr", {"seed": seed}).fit(engaged) for seed in args.seeds}
    runs: dict[str, dict[str, list[dict]]] = {}
    for label in LABELS:
        train["all"] = "all"
        _, item_rate, tab_rate = shrunk_rates(train, "item", "all", "tab", reward=label, prior=PRIOR)
        overall = float(train[label].mean())

        def q(tab: str, items: np.ndarray) -> np.ndarray:
            base = item_rate.reindex(items).fillna(overall).to_numpy()
            got = tab_rate.reindex(pd.MultiIndex.from_arrays([np.full(len(items), tab), items])).to_numpy()
            return np.where(np.isnan(got), base, got)

        rewards = test[label].to_numpy(np.float64)
        props = test["p"].to_numpy()
        log = BanditLog(test["item"].to_numpy(), rewards, props)
        q_logged = _q_rows(test, q)
        groups = test.groupby(["tab", "day"]).indices
        items_all = test["item"].to_numpy()
        q_arms = {k: q(k[0], a) for k, a in arms.items()}
        popular_top = {k: a[np.argsort(-q_arms[k], kind="stable")[:args.top]] for k, a in arms.items()}
        policies: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        uniform, top_pop, logger = [(np.empty(len(test)), np.empty(len(test))) for _ in range(3)]
        for k, idx in groups.items():
            a, qa, top = arms[k], q_arms[k], popular_top[k]
            uniform[0][idx], uniform[1][idx] = 1.0 / len(a), qa.mean()
            top_pop[0][idx] = np.isin(items_all[idx], top) / len(top)
            top_pop[1][idx] = q(k[0], top).mean()
            logger[0][idx], logger[1][idx] = props[idx], arm_p[k] @ qa
        policies["random"] = uniform
        policies[f"popular (top {args.top})"] = top_pop
        policies["the estimated logger (check)"] = logger
        for seed in args.seeds:
            policies[f"BPR (top {args.top})|{seed}"] = _bpr_policy(models[seed], test, arms, popular_top, q, args.top)
            print(f"  {label}: BPR seed {seed} done", flush=True)
        for name, (pi, q_target) in policies.items():
            est = evaluate_policy(log, target_probs=pi, q_logged=q_logged, q_target=q_target,
                                  estimators=("ips", "snips", "dr"), n_boot=200, seed=0)
            w = pi / props
            ess = float(w.sum() ** 2 / max((w ** 2).sum(), 1e-12))
            base = name.split("|")[0]
            runs.setdefault(label, {}).setdefault(base, []).append(
                {**{k: e.to_dict() for k, e in est.items()}, "ess": ess})
        print(f"{label}: logged mean {rewards.mean():.4f}; " + "; ".join(
            f"{n} SNIPS {v[-1]['snips']['value']:.4f} (ESS {v[-1]['ess']:.0f})" for n, v in runs[label].items()),
            flush=True)
    seconds = time.perf_counter() - t0
    RESULTS.mkdir(exist_ok=True)
    logged = {lab: float(test[lab].mean()) for lab in LABELS}
    (RESULTS / "ope_kuairand.json").write_text(json.dumps({"presented": presented, "logged": logged, "runs": runs,
                                                           "seeds": args.seeds, "seconds": seconds}, indent=2))
    lines = [f"KuaiRand, last fifth of the impressions ({presented['rounds']:,}) evaluated off-policy with an "
             f"estimated logger (each video's share of its tab's impressions that day); {seconds:.0f} s. "
             "Mean ± std over the BPR seeds where there are several, [95% bootstrap interval], ESS = effective "
             "sample size.", ""]
    for lab in LABELS:
        lines += [f"**{lab}** (logged mean {logged[lab]:.4f})", "",
                  "| policy | IPS | SNIPS | DR | ESS |", "|---|---:|---:|---:|---:|"]
        for name, rs in runs[lab].items():
            cells = []
            for e in ("ips", "snips", "dr"):
                v = [r[e]["value"] for r in rs]
                lo, hi = np.mean([r[e]["low"] for r in rs]), np.mean([r[e]["high"] for r in rs])
                cells.append(f"{fmt(float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else None, 4)} "
                             f"[{lo:.4f}, {hi:.4f}]")
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {np.mean([r['ess'] for r in rs]):,.0f} |")
        lines.append("")
    (RESULTS / "ope_kuairand.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _q_rows(test: pd.DataFrame, q) -> np.ndarray:
    out = np.empty(len(test))
    for tab, idx in test.groupby("tab").indices.items():
        out[idx] = q(tab, test["item"].to_numpy()[idx])
    return out


def _bpr_policy(model, test: pd.DataFrame, arms: dict, popular_top: dict, q, top: int):
    """Uniform over each user's ``top`` best arms by BPR (the popular policy for users BPR never saw)."""
    users = test["user"].to_numpy()
    known = np.diff(model._require_fitted().indptr)[users] > 0  # users with training positives
    items_all = test["item"].to_numpy()
    probs, qt = np.empty(len(test)), np.empty(len(test))
    for (tab, day), idx in test.groupby(["tab", "day"]).indices.items():
        a = arms[(tab, day)]  # sorted ids: the groupby that made them sorts
        qa = q(tab, a)
        pop = popular_top[(tab, day)]
        new, old = idx[~known[idx]], idx[known[idx]]
        probs[new] = np.isin(items_all[new], pop) / len(pop)
        qt[new] = q(tab, pop).mean()
        m = min(top, len(a))
        for s in range(0, len(old), 2048):  # users × arms scores, a block at a time
            rows = old[s:s + 2048]
            scores = model.score(users[rows], a)
            best = np.argpartition(-scores, m - 1, axis=1)[:, :m] if m < len(a) else \
                np.tile(np.arange(len(a)), (len(rows), 1))
            chosen = np.zeros(scores.shape, bool)
            np.put_along_axis(chosen, best, True, axis=1)
            pos = np.searchsorted(a, items_all[rows])
            probs[rows] = chosen[np.arange(len(rows)), pos] / m
            qt[rows] = (chosen * qa[None, :]).sum(axis=1) / m
    return probs, qt


if __name__ == "__main__":
    main()
