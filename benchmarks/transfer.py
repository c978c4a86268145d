"""Benchmark: transfer from KuaiRand's big surface to its small ones, against training from scratch (issue 15).

KuaiRand's tab 1 holds 76% of the impressions; tabs 0, 4, 6 and 2 hold 9%, 6%, 5% and 3%. Time-ordered
split: the last fifth of the impressions is the test part. Per seed:

* **pre-trained**: a multi-task MMoE (click, long view, like, play time) fitted on tab 1's training
  impressions (its epochs chosen on its latest tenth);
* for each small tab and each share of that tab's training impressions (10%, 30%, 100%, drawn at random
  with the seed): **scratch**, the same model fitted on that share alone, and **transfer**, the
  pre-trained model fine-tuned on it (:meth:`MultiTask.fine_tune`; early stopping on the share's latest
  tenth also scores the start, so a fine-tuning that only hurts keeps the pre-trained model). The
  pre-trained model unchanged is reported too (share 0).

Scored on the tab's test impressions by users with any training impression (the same impressions for
every row): click AUC and GAUC, long-view AUC. Mean ± std over seeds; the ratio is transfer / scratch.

Writes benchmarks/results/transfer.json, .md and transfer.png.
Usage: python benchmarks/transfer.py [--seeds 0 1 2] [--tabs 0 4 6 2] [--shares 0.1 0.3 1.0] [--plot-only]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from mosaicrec.data import load_dataset
from mosaicrec.data.splits import temporal_split
from mosaicrec.evaluation.impressions import impression_metrics
from mosaicrec.evaluation.stats import fmt
from mosaicrec.models import create

RESULTS = Path(__file__).parent / "results"
PARAMS = {"architecture": "mmoe", "refit": False}  # epochs chosen on the latest tenth of what each fit sees
METRICS = ("click auc", "click gauc", "long_view auc")


def share_of(events, share: float, seed: int):
    if share >= 1.0:
        return events
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(events.n_events, max(1, int(round(share * events.n_events))), replace=False))
    return events.subset(keep)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--tabs", nargs="+", default=["0", "4", "6", "2"])
    ap.add_argument("--shares", type=float, nargs="+", default=[0.1, 0.3, 1.0])
    ap.add_argument("--plot-only", action="store_true", help="redraw the plot from transfer.json")
    args = ap.parse_args()
    if args.plot_only:
        saved = json.loads((RESULTS / "transfer.json").read_text())
        plot(saved["rows"], args.tabs, args.shares, RESULTS / "transfer.png")
        return
    console = Console()
    t_start = time.perf_counter()
    x = load_dataset("kuairand").interactions
    train, test = temporal_split(x, 0.2)
    tab = np.asarray(train.context["scenario"]).astype(str)
    test_tab = np.asarray(test.context["scenario"]).astype(str)
    rows: list[dict] = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        pre = create("multitask", {**PARAMS, "seed": seed}).fit(train.subset(tab == "1"))
        console.print(f"seed {seed}: pre-trained on tab 1 in {time.perf_counter() - t0:.0f} s "
                      f"(best epoch {pre.best_epoch_})")
        for t in args.tabs:
            own, target = train.subset(tab == t), test.subset(test_tab == t)
            m, _ = impression_metrics(pre, train, target, ["click", "long_view"])
            rows.append({"seed": seed, "tab": t, "share": 0.0, "model": "pre-trained", "events": 0,
                         **{k: m[k] for k in METRICS}})
            for share in args.shares:
                part = share_of(own, share, seed)
                for name in ("scratch", "transfer"):
                    t0 = time.perf_counter()
                    model = (create("multitask", {**PARAMS, "seed": seed}).fit(part) if name == "scratch"
                             else pre.fine_tune(part))
                    m, _ = impression_metrics(model, train, target, ["click", "long_view"])
                    rows.append({"seed": seed, "tab": t, "share": share, "model": name, "events": part.n_events,
                                 "fit_seconds": round(time.perf_counter() - t0, 1),
                                 "best_epoch": getattr(model, "best_epoch_", None), **{k: m[k] for k in METRICS}})
                    console.print(f"  tab {t} share {share:g} {name}: click GAUC {m['click gauc']:.4f} "
                                  f"AUC {m['click auc']:.4f} ({part.n_events} events)")
    seconds = time.perf_counter() - t_start
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "transfer.json").write_text(json.dumps({"seeds": args.seeds, "seconds": round(seconds, 1),
                                                       "params": PARAMS, "rows": rows}, indent=2))
    lines = [f"Transfer from tab 1 to the small tabs (KuaiRand, temporal split), {len(args.seeds)} seeds, "
             f"{seconds / 60:.0f} min. Ratio: transfer / scratch on click GAUC.", "",
             "| tab | share | events | scratch click AUC | transfer click AUC | scratch click GAUC | "
             "transfer click GAUC | ratio (GAUC) | scratch long-view AUC | transfer long-view AUC |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def cell(t: str, share: float, model: str, metric: str) -> tuple[str, float]:
        v = np.array([r[metric] for r in rows if r["tab"] == t and r["share"] == share and r["model"] == model])
        return fmt(float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else None), float(v.mean())

    for t in args.tabs:
        lines.append(f"| {t} | 0 (pre-trained only) | 0 | — | {cell(t, 0.0, 'pre-trained', 'click auc')[0]} | — | "
                     f"{cell(t, 0.0, 'pre-trained', 'click gauc')[0]} | — | — | "
                     f"{cell(t, 0.0, 'pre-trained', 'long_view auc')[0]} |")
        for share in args.shares:
            n = next(r["events"] for r in rows if r["tab"] == t and r["share"] == share)
            sg, tg = cell(t, share, "scratch", "click gauc"), cell(t, share, "transfer", "click gauc")
            lines.append(f"| {t} | {share:g} | {n} | {cell(t, share, 'scratch', 'click auc')[0]} | "
                         f"{cell(t, share, 'transfer', 'click auc')[0]} | {sg[0]} | {tg[0]} | {tg[1] / sg[1]:.2f} | "
                         f"{cell(t, share, 'scratch', 'long_view auc')[0]} | "
                         f"{cell(t, share, 'transfer', 'long_view auc')[0]} |")
    (RESULTS / "transfer.md").write_text("\n".join(lines) + "\n")
    plot(rows, args.tabs, args.shares, RESULTS / "transfer.png")
    console.print("\n".join(lines))


def plot(rows: list[dict], tabs: list[str], shares: list[float], path: Path) -> None:
    """Click AUC (top) and GAUC (bottom) against the share of each tab's data, scratch vs transfer."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ("click auc", "click gauc")
    fig, axes = plt.subplots(len(metrics), len(tabs), figsize=(4 * len(tabs), 3.2 * len(metrics)), squeeze=False)
    for row, metric in enumerate(metrics):
        for ax, t in zip(axes[row], tabs):
            for model, style in (("scratch", "o--"), ("transfer", "o-")):
                means, stds = [], []
                for share in shares:
                    v = np.array([r[metric] for r in rows if r["tab"] == t and r["share"] == share
                                  and r["model"] == model])
                    means.append(v.mean()), stds.append(v.std(ddof=1) if len(v) > 1 else 0.0)
                ax.errorbar([100 * s for s in shares], means, yerr=stds, fmt=style, capsize=3, label=model)
            pre = np.mean([r[metric] for r in rows if r["tab"] == t and r["model"] == "pre-trained"])
            ax.axhline(pre, color="grey", lw=1, ls=":", label="pre-trained only")
            ax.set_xscale("log")
            ax.set_xticks([100 * s for s in shares], [f"{100 * s:g}%" for s in shares])
            ax.set_title(f"tab {t}")
            if row == len(metrics) - 1:
                ax.set_xlabel("share of the tab's training impressions")
        axes[row][0].set_ylabel(f"{metric.replace('click ', 'click ').upper().replace('CLICK', 'click')} (test)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("KuaiRand: fine-tuning a tab-1 model vs training from scratch (mean ± std over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
