"""Benchmark: our SASRec against RecBole's SASRec on the same leave-last-out split (issue 15).

ml100k-multimodal's ratings in time order; each user's last rating is the test item, the one before it the
validation item both models stop on (NDCG@10 for RecBole, Recall@10 for ours), ranked against the whole
catalog with the user's training films masked (RecBole's own sequential ranking does not mask them; its
unmasked figures are kept in the JSON). Both see the same event order: times are written as each event's
rank, so ties fall the same way in both.

RecBole 1.2.1 runs in a virtual environment of its own (``.mosaicrec/peer-recbole``, made on first use: torch
2.13.0 from the local wheel, RecBole without its pinned Ray, numpy < 2). Per seed: RecBole's SASRec as
shipped (2 layers, 2 heads, 64 wide, cross-entropy, lr 1e-3, patience 10) and ours (``sasrec``, ids, its
defaults: 2 layers, 1 head, 64 wide, lr 2e-3, patience 5). Mean ± std over seeds; ratio ours / RecBole.

Writes benchmarks/results/peer_sasrec.json and .md.
Usage: python benchmarks/peer_sasrec.py [--seeds 0 1 2] [--epochs 200] [--users N (a smoke run on N users)]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from mosaicrec.data import load_dataset
from mosaicrec.data.splits import leave_last_out
from mosaicrec.evaluation.protocol import EvaluationConfig, evaluate_ranking
from mosaicrec.evaluation.stats import fmt
from mosaicrec.models import create

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
VENV = ROOT / ".mosaicrec" / "peer-recbole"
RUNNER = Path(__file__).parent / "peer" / "recbole_sasrec.py"
PEER_REQUIREMENTS = ["numpy<2", "scipy<1.14", "pandas<2.2", "tqdm", "colorlog==4.7.2", "colorama==0.4.4",
                     "scikit-learn<1.6", "pyyaml", "tensorboard", "thop", "tabulate", "plotly", "texttable",
                     "psutil"]


def peer_python(console: Console) -> Path:
    """The peer venv's interpreter, made on first use (RecBole pins Ray <= 2.6.3, which it needs only for
    its own tuning: it is installed without dependencies and they are listed here)."""
    python = VENV / "bin" / "python"
    if python.exists() and subprocess.run([python, "-c", "import recbole"], capture_output=True).returncode == 0:
        return python
    console.print(f"making RecBole's environment in {VENV} (once)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", VENV], check=True)
    pip = [python, "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, "--no-deps", "recbole==1.2.1"], check=True)
    subprocess.run([*pip, *PEER_REQUIREMENTS], check=True)
    return python


def write_atomic(x, train, folder: Path) -> None:
    """RecBole's atomic file (times = each event's rank in our order) and each user's training films."""
    order = np.lexsort((np.arange(x.n_events), x.timestamps, x.users))
    rank = np.empty(x.n_events, np.int64)
    rank[order] = np.arange(x.n_events)
    (folder / "ml100k").mkdir(parents=True, exist_ok=True)
    users, items = x.user_ids[x.users], x.item_ids[x.items]
    lines = ["user_id:token\titem_id:token\ttimestamp:float",
             *(f"{u}\t{i}\t{t}" for u, i, t in zip(users, items, rank))]
    (folder / "ml100k" / "ml100k.inter").write_text("\n".join(lines) + "\n")
    history: dict[str, list[str]] = {}
    for u, i in zip(train.users, train.items):
        history.setdefault(str(x.user_ids[u]), []).append(str(x.item_ids[i]))
    (folder / "history.json").write_text(json.dumps(history))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=200, help="most epochs of either model (both stop early)")
    ap.add_argument("--users", type=int, default=0, help="only the first N users (a smoke run); 0: all")
    args = ap.parse_args()
    console = Console()
    t_start = time.perf_counter()
    python = peer_python(console)
    x = load_dataset("ml100k-multimodal").interactions
    if args.users:
        x = x.subset(x.users < args.users)
    train, test = leave_last_out(x)
    test_item = {str(x.user_ids[u]): str(x.item_ids[i]) for u, i in zip(test.users, test.items)}
    evaluation = EvaluationConfig(ks=[10], metrics=["ndcg", "recall"])
    rows = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            write_atomic(x, train, folder)
            t0 = time.perf_counter()
            RESULTS.mkdir(parents=True, exist_ok=True)
            with open(RESULTS / f"peer_sasrec_recbole_seed{seed}.log", "w") as log:  # RecBole's epochs
                subprocess.run([python, RUNNER, "--data", folder, "--history", folder / "history.json", "--seed",
                                str(seed), "--epochs", str(args.epochs), "--out", folder / "out.json"], check=True,
                               cwd=folder, stdout=log, stderr=subprocess.STDOUT)
            peer = json.loads((folder / "out.json").read_text())
        same = np.mean([peer["targets"].get(u) == i for u, i in test_item.items()])
        if same < 1.0:  # the same split or no comparison
            raise RuntimeError(f"RecBole's test item differs from ours for {1 - same:.1%} of the users")
        ranks = np.array([peer["ranks"][u] for u in test_item])
        rows.append({"seed": seed, "model": "RecBole SASRec", "seconds": round(time.perf_counter() - t0, 1),
                     "best_epoch": peer["best_epoch"], "ndcg@10": float(np.mean(np.where(
                         ranks < 10, 1 / np.log2(ranks + 2), 0.0))), "recall@10": float(np.mean(ranks < 10)),
                     "recbole_unmasked": peer["recbole_test"]})
        t0 = time.perf_counter()
        ours = create("sasrec", {"seed": seed, "epochs": args.epochs}).fit(train)
        m = evaluate_ranking(ours, test, exclude=train.binary, config=evaluation).metrics
        rows.append({"seed": seed, "model": "mosaicrec sasrec", "seconds": round(time.perf_counter() - t0, 1),
                     "best_epoch": ours.best_epoch_, "ndcg@10": m["ndcg@10"], "recall@10": m["recall@10"]})
        for r in rows[-2:]:
            console.print(f"seed {seed} {r['model']}: NDCG@10 {r['ndcg@10']:.4f} Recall@10 {r['recall@10']:.4f} "
                          f"(best epoch {r['best_epoch']}, {r['seconds']:.0f} s)")
    seconds = time.perf_counter() - t_start
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "peer_sasrec.json").write_text(json.dumps({"seeds": args.seeds, "seconds": round(seconds, 1),
                                                          "users": len(test_item), "rows": rows}, indent=2))

    def stat(model: str, key: str) -> tuple[str, float]:
        v = np.array([r[key] for r in rows if r["model"] == model], float)
        return fmt(float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else None), float(v.mean())

    lines = [f"SASRec against RecBole 1.2.1's, ml100k-multimodal leave-last-out ({len(test_item)} users, full "
             f"ranking, training films masked), {len(args.seeds)} seeds, {seconds / 60:.0f} min.", "",
             "| model | NDCG@10 | Recall@10 | best epoch | fit s |", "|---|---:|---:|---:|---:|"]
    for model in ("RecBole SASRec", "mosaicrec sasrec"):
        lines.append(f"| {model} | {stat(model, 'ndcg@10')[0]} | {stat(model, 'recall@10')[0]} | "
                     f"{stat(model, 'best_epoch')[0]} | {stat(model, 'seconds')[0]} |")
    lines.append(f"| ratio (ours / RecBole) | {stat('mosaicrec sasrec', 'ndcg@10')[1] / stat('RecBole SASRec', 'ndcg@10')[1]:.2f}"
                 f" | {stat('mosaicrec sasrec', 'recall@10')[1] / stat('RecBole SASRec', 'recall@10')[1]:.2f} | | |")
    (RESULTS / "peer_sasrec.md").write_text("\n".join(lines) + "\n")
    console.print("\n".join(lines))


if __name__ == "__main__":
    main()
