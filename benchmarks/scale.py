"""Benchmark: the neural content models at scale, against BPR and EASE in the same run (issue 14).

No shipped dataset has a million events with item content, so the catalog is generated
(:func:`mosaicrec.data.synthetic.synthetic_catalog`: power-law popularity, log-normal user activity, events
drawn from a low-rank taste model, a 384-d "text" and a 256-d "image" view of each item's tastes with noise,
5% of items missing each view). Sizes grow from 100k to 1M events, with ~170 events per user and the
catalog growing as the square root of the events (3,600 items at 1M, as MovieLens-1M).

For each size and seed: a random 80/20 split, every model fitted on the training part and scored by full
ranking on the test part, through the same path as ``mosaicrec evaluate`` (``run_experiment``). Each
neural model stops early on a validation part of its training events (Recall@20, patience 3) and starts
from a BPR fit (``init = "bpr"``) with the settings of the run's BPR (``start_from``); the start is a
candidate of early stopping too, kept when no epoch beats it on validation (the "epoch kept" column: -1).
``--trials N`` tunes BPR and EASE by Optuna on a validation split (N trials per model, seed and size; the
neural starts then follow the tuned BPR), and with ``--tune-neural`` the neural models' learning rate and
L2 too. Paired per-user comparisons against BPR.

Writes benchmarks/results/scale.json and scale.md.
Usage: python benchmarks/scale.py [--sizes 100000 300000 1000000] [--seeds 0 1 2] [--trials 0] [--tune-neural]
       [--out scale]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from mosaicrec.data.splits import SplitConfig
from mosaicrec.data.synthetic import synthetic_catalog
from mosaicrec.evaluation.protocol import EvaluationConfig
from mosaicrec.evaluation.runner import environment, run_experiment
from mosaicrec.evaluation.stats import fmt, fmt_p, paired
from mosaicrec.evaluation.tuning import TuningConfig
from mosaicrec.models.registry import ModelSpec
from mosaicrec.evaluation.provenance import write_result

RESULTS = Path(__file__).parent / "results"
NEURAL = {"epochs": 30, "early_stopping": 3, "batch_size": 8192, "lr": 3e-3, "reg": 1e-3}
SPACE = {"lr": {"low": 1e-3, "high": 1e-2, "log": True}, "reg": {"low": 1e-3, "high": 3e-2, "log": True}}
MODELS = [("bpr", "BPR", {}), ("ease", "EASE", {}), ("hybrid", "hybrid", NEURAL), ("vbpr", "VBPR", NEURAL),
          ("graph", "graph", NEURAL), ("two-tower", "two-tower", NEURAL)]
BASELINES = ("BPR", "EASE")


def catalog_size(events: int) -> tuple[int, int]:
    """(users, items) for a target number of events: ~170 events per user, items ∝ √events."""
    return max(200, events // 170), max(300, int(3600 * (events / 1e6) ** 0.5))


def run_size(events: int, args, console: Console) -> dict[str, Any]:
    n_users, n_items = catalog_size(events)
    dataset, content = synthetic_catalog(n_users, n_items, events, seed=0)
    # every neural model's BPR start is the run's BPR as fitted (and tuned) in the same seed
    start = "BPR" if "BPR" in args.models else None
    specs = [ModelSpec(name=n, label=label, params=p, start_from=None if label in BASELINES else start)
             for n, label, p in MODELS if label in args.models]
    tuning = None
    if args.trials:
        neural = [label for label in args.models if label not in BASELINES] if args.tune_neural else []
        tuning = TuningConfig(trials=args.trials, metric="recall@10", space={label: SPACE for label in neural},
                              models=[label for label in args.models if label in BASELINES] + neural)
    t0 = time.perf_counter()
    result = run_experiment(dataset, SplitConfig(kind="random", test_fraction=0.2), specs,
                            EvaluationConfig(ks=[10, 20], metrics=["ndcg", "recall"]), name=f"scale-{events}",
                            console=console, content=content, seeds=args.seeds, tuning=tuning,
                            baseline="BPR" if "BPR" in args.models else None)
    rows = []
    by_label = {r.label: r for r in result.rows}
    for r in result.rows:
        fits = [run["fit_seconds"] for run in r.runs if run["scenario"] == "warm"]
        row = {"events": dataset.interactions.n_events, "users": n_users, "items": n_items, "model": r.label,
               "recall@10": (r.metrics["recall@10"], r.std.get("recall@10", 0.0)),
               "ndcg@10": (r.metrics["ndcg@10"], r.std.get("ndcg@10", 0.0)),
               "fit_s": (float(np.mean(fits)), float(np.std(fits))), "vs_bpr": None,
               # per seed: the epoch early stopping kept (-1: no epoch beat the BPR start on validation)
               "best_epoch": [run.get("best_epoch") for run in r.runs if run["scenario"] == "warm"]}
        base = by_label.get("BPR")
        if base is not None and r.label != "BPR":
            a, b = r.per_user.get(("warm", "ndcg@10")), base.per_user.get(("warm", "ndcg@10"))
            if a is not None and b is not None:
                d = paired(a, b)
                mean_b = float(np.mean(np.concatenate(b)))
                row["vs_bpr"] = {"relative": d["diff"] / mean_b if mean_b else None, **d}
        rows.append(row)
    return {"events": events, "seconds": round(time.perf_counter() - t0, 1), "rows": rows,
            "chosen": [{"model": r.label, **{k: v for k, v in run.items() if k != "metrics"}}
                       for r in result.rows for run in r.runs if "chosen" in run]}


def warm_up(specs: list[ModelSpec]) -> None:
    """Fit each kind of model once on a tiny catalog, so numba compilation and torch's first import (with
    its optimiser's) are not counted in the first timed fit (the runner times fits under tracemalloc, which
    makes an import several times slower)."""
    from mosaicrec.models import MODELS as REGISTRY, create  # this module's MODELS is the benchmark's list

    dataset, content = synthetic_catalog(100, 60, 1500, seed=99)
    for name in dict.fromkeys(spec.name for spec in specs):
        cls = REGISTRY[name]
        params = {k: 1 for k in ("epochs", "iterations") if k in cls.Config.model_fields}
        if params and cls.__module__.startswith("mosaicrec."):  # trained ones (numba or torch)
            create(name, params).fit(dataset.interactions, content=content)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--trials", type=int, default=0, help="Optuna trials per model, seed and size: BPR's and "
                    "EASE's built-in spaces (the neural starts follow the tuned BPR)")
    ap.add_argument("--tune-neural", action="store_true", help="with --trials: also tune the neural models' "
                    "lr and L2 (3-7 min per trial at 1M events)")
    ap.add_argument("--models", nargs="+", default=[label for _, label, _ in MODELS])
    ap.add_argument("--out", default="scale", help="results file name (benchmarks/results/OUT.json and .md)")
    args = ap.parse_args()
    console = Console()
    warm_up([ModelSpec(name=n, label=label) for n, label, _ in MODELS if label in args.models])
    t0 = time.perf_counter()
    sizes = []
    for n in args.sizes:  # written after every size: the 1M runs take most of the time
        sizes.append(run_size(n, args, console))
        write(sizes, args, time.perf_counter() - t0, console)


def write(sizes: list[dict], args, seconds: float, console: Console) -> None:
    table = Table(title=f"neural models at scale (synthetic), seeds {args.seeds}: mean ± std")
    cols = ["events", "model", "Recall@10", "NDCG@10", "fit s", "NDCG@10 vs BPR (p)", "epoch kept"]
    for c in cols:
        table.add_column(c, justify="left" if c == "model" else "right")
    lines = []
    for size in sizes:
        for r in size["rows"]:
            vs = r["vs_bpr"]
            rel = "—" if vs is None or vs["relative"] is None else f"{100 * vs['relative']:+.1f}% ({fmt_p(vs['p_ttest'])})"
            cells = [f"{r['events']:,}", r["model"], fmt(*r["recall@10"]), fmt(*r["ndcg@10"]),
                     fmt(*r["fit_s"], digits=1), rel,
                     ", ".join("—" if e is None else str(e) for e in r.get("best_epoch", [])) or "—"]
            table.add_row(*cells)
            lines.append("| " + " | ".join(cells) + " |")
    console.print(table)
    growth = []
    models = [r["model"] for r in sizes[0]["rows"]]
    if len(sizes) > 1:
        for m in models:
            fit = [next(r["fit_s"][0] for r in s["rows"] if r["model"] == m) for s in sizes]
            ev = [s["rows"][0]["events"] for s in sizes]
            slope = float(np.polyfit(np.log(ev), np.log(np.maximum(fit, 1e-3)), 1)[0])
            growth.append({"model": m, "fit_s": fit, "exponent": slope})
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"meta": {"seeds": args.seeds, "trials": args.trials, "tune_neural": args.tune_neural,
                        "neural_params": NEURAL,
                        "environment": environment(), "seconds": round(seconds, 1)},
               "sizes": sizes, "growth": growth}
    how = "neural: fixed lr/L2, epochs chosen by early stopping on validation, BPR start as BPR's"
    if args.trials:
        how = (f"BPR and EASE{' and the neural lr/L2' if args.tune_neural else ''} tuned on validation "
               f"({args.trials} Optuna trials); {how if not args.tune_neural else 'neural BPR start as BPR'}")
    md = [f"# Neural models at scale (synthetic catalog; seeds {', '.join(map(str, args.seeds))}; {how}; "
          f"{seconds / 60:.0f} min on {environment().get('cpus', '?')} CPUs)", "",
          "| " + " | ".join(cols) + " |", "|---:|---|---:|---:|---:|---:|---:|", *lines]
    if growth:
        md += ["", "## Fit time growth", "", "| model | " + " | ".join(f"{s['rows'][0]['events']:,}" for s in sizes)
               + " | exponent (fit ∝ events^x) |", "|---|" + "---:|" * (len(sizes) + 1)]
        md += [f"| {g['model']} | " + " | ".join(f"{v:.1f} s" for v in g["fit_s"]) + f" | {g['exponent']:.2f} |"
               for g in growth]
    chosen = [(size["rows"][0]["events"], c) for size in sizes for c in size["chosen"]]
    if chosen:
        md += ["", "## Chosen on validation", "", "| events | model | seed | chosen | validation |", "|---:|---|---:|---|---:|"]
        md += [f"| {ev:,} | {c['model']} | {c['seed']} | "
               + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in c["chosen"].items())
               + f" | {c['validation']:.4f} |" for ev, c in chosen]
    write_result(RESULTS, args.out, json.loads(json.dumps(payload, default=str)), "\n".join(md) + "\n")
    console.print(f"wrote {RESULTS / args.out}.json and .md")


if __name__ == "__main__":
    main()
