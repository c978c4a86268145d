"""Benchmark: our SASRec against peers' SASRec on the same leave-last-out split (issue 15).

ml100k-multimodal's ratings in time order; each user's last rating is the test item, ranked against the whole
catalog with the user's training films masked. Every model sees the same event order (times are written as
each event's rank, so ties fall the same way) and chooses its epochs on each user's last training event.

Peers, each in a virtual environment of its own (made on first use under ``.mosaicrec/``: torch 2.13.0 from
the local wheel, then the peer):

* ``rectools`` (default): RecTools 0.19's SASRecModel as shipped (2 blocks, 4 heads, 256 wide, softmax
  loss), trained on every history's shifted sequence; stops on the validation loss (patience 5) and keeps
  the best epoch (benchmarks/peer/rectools_sasrec.py).
* ``recbole``: RecBole 1.2.1's SASRec as shipped (2 layers, 2 heads, 64 wide, cross-entropy, lr 1e-3,
  patience 10 on NDCG@10), installed without its pinned Ray. It trains each prefix of each history as its own
  sequence, about 100k sequences an epoch here: hours on 2 CPU cores (benchmarks/peer/recbole_sasrec.py).

Ours: ``sasrec`` (ids), its defaults (2 layers, 1 head, 64 wide, lr 2e-3, patience 5 on Recall@10).
Mean ± std over seeds; ratio ours / each peer.

Writes benchmarks/results/peer_sasrec.json and .md (and each seed's rows to peer_sasrec.jsonl as it ends).
Usage: python benchmarks/peer_sasrec.py [--peers rectools recbole] [--seeds 0 1 2] [--epochs 200]
       [--users N (a smoke run on N users)] [--from-log (the table from the per-seed rows of runs split
       over processes, e.g. one per seed)]
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
from mosaicrec.evaluation.provenance import write_result

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
RUNNERS = {"recbole": Path(__file__).parent / "peer" / "recbole_sasrec.py",
           "rectools": Path(__file__).parent / "peer" / "rectools_sasrec.py"}
NAMES = {"recbole": "RecBole SASRec", "rectools": "RecTools SASRec"}
# RecBole pins Ray <= 2.6.3, which it needs only for its own tuning: it goes in without dependencies, and
# those it needs are listed here
PEER_INSTALL = {
    "recbole": [["--no-deps", "recbole==1.2.1"],
                ["numpy<2", "scipy<1.14", "pandas<2.2", "tqdm", "colorlog==4.7.2", "colorama==0.4.4",
                 "scikit-learn<1.6", "pyyaml", "tensorboard", "thop", "tabulate", "plotly", "texttable", "psutil"]],
    "rectools": [["rectools[torch]==0.19.0"]],
}


def peer_python(peer: str, console: Console) -> Path:
    """The peer venv's interpreter, made on first use."""
    venv = ROOT / ".mosaicrec" / f"peer-{peer}"
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([python, "-c", f"import {peer}"], capture_output=True).returncode == 0:
        return python
    console.print(f"making {peer}'s environment in {venv} (once)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True)
    pip = [python, "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    for packages in PEER_INSTALL[peer]:
        subprocess.run([*pip, *packages], check=True)
    return python


def write_files(x, train, test, folder: Path) -> None:
    """The peers' inputs, with times = each event's rank in our order: RecBole's atomic file of every event
    (its own split holds out the same last event), each user's training films, and for RecTools the training
    events and each user's test film."""
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
    is_train = np.ones(x.n_events, bool)
    held = set(zip(test.users.tolist(), test.items.tolist()))
    is_train[[n for n, (u, i) in enumerate(zip(x.users.tolist(), x.items.tolist())) if (u, i) in held]] = False
    (folder / "train.csv").write_text("user,item,time\n" + "".join(
        f"{u},{i},{t}\n" for u, i, t in zip(users[is_train], items[is_train], rank[is_train])))
    (folder / "test.json").write_text(json.dumps({str(x.user_ids[u]): str(x.item_ids[i])
                                                  for u, i in zip(test.users, test.items)}))


def run_peer(peer: str, python: Path, folder: Path, seed: int, epochs: int, n_items: int) -> dict:
    """One peer fit on the files in ``folder``; its log goes to benchmarks/results/."""
    args = {"recbole": ["--history", folder / "history.json"], "rectools": ["--n-items", str(n_items)]}[peer]
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / f"peer_sasrec_{peer}_seed{seed}.log", "w") as log:  # the peer's own epoch log
        subprocess.run([python, RUNNERS[peer], "--data", folder, *args, "--seed", str(seed), "--epochs",
                        str(epochs), "--out", folder / "out.json"], check=True, cwd=folder, stdout=log,
                       stderr=subprocess.STDOUT)
    return json.loads((folder / "out.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peers", nargs="+", choices=sorted(RUNNERS), default=["rectools"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=200, help="most epochs of any model (all stop early)")
    ap.add_argument("--users", type=int, default=0, help="only the first N users (a smoke run); 0: all")
    ap.add_argument("--from-log", action="store_true", help="only write the table from peer_sasrec.jsonl "
                    "(seeds run as separate processes)")
    args = ap.parse_args()
    console = Console()
    if args.from_log:
        return table_from_log(args.peers, console)
    t_start = time.perf_counter()
    pythons = {peer: peer_python(peer, console) for peer in args.peers}
    x = load_dataset("ml100k-multimodal").interactions
    if args.users:
        x = x.subset(x.users < args.users)
    train, test = leave_last_out(x)
    test_item = {str(x.user_ids[u]): str(x.item_ids[i]) for u, i in zip(test.users, test.items)}
    evaluation = EvaluationConfig(ks=[10], metrics=["ndcg", "recall"])
    rows = []
    for seed in args.seeds:
        for peer, python in pythons.items():
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                write_files(x, train, test, Path(tmp))
                out = run_peer(peer, python, Path(tmp), seed, args.epochs, x.n_items)
            if "targets" in out:  # RecBole makes its own split: it must be ours, or nothing is compared
                same = np.mean([out["targets"].get(u) == i for u, i in test_item.items()])
                if same < 1.0:
                    raise RuntimeError(f"RecBole's test item differs from ours for {1 - same:.1%} of the users")
            ranks = np.array([out["ranks"][u] for u in test_item])
            rows.append({"seed": seed, "model": NAMES[peer], "seconds": round(time.perf_counter() - t0, 1),
                         "best_epoch": out["best_epoch"], "ndcg@10": float(np.mean(np.where(
                             ranks < 10, 1 / np.log2(ranks + 2), 0.0))), "recall@10": float(np.mean(ranks < 10)),
                         **({"recbole_unmasked": out["recbole_test"]} if "recbole_test" in out else {})})
        t0 = time.perf_counter()
        ours = create("sasrec", {"seed": seed, "epochs": args.epochs}).fit(train)
        m = evaluate_ranking(ours, test, exclude=train.binary, config=evaluation).metrics
        rows.append({"seed": seed, "model": "mosaicrec sasrec", "seconds": round(time.perf_counter() - t0, 1),
                     "best_epoch": ours.best_epoch_, "ndcg@10": m["ndcg@10"], "recall@10": m["recall@10"]})
        RESULTS.mkdir(parents=True, exist_ok=True)
        with open(RESULTS / "peer_sasrec.jsonl", "a") as log:  # each seed's rows as they are made
            log.write("".join(json.dumps(r) + "\n" for r in rows[-1 - len(pythons):]))
        for r in rows[-1 - len(pythons):]:
            console.print(f"seed {seed} {r['model']}: NDCG@10 {r['ndcg@10']:.4f} Recall@10 {r['recall@10']:.4f} "
                          f"(best epoch {r['best_epoch']}, {r['seconds']:.0f} s)")
    write_table(rows, args.peers, len(test_item), time.perf_counter() - t_start, console)


def write_table(rows: list[dict], peers: list[str], users: int, seconds: float, console: Console) -> None:
    """peer_sasrec.json and .md from per-seed rows: mean ± std over the seeds, and ours / each peer."""
    seeds = sorted({r["seed"] for r in rows})
    RESULTS.mkdir(parents=True, exist_ok=True)

    def stat(model: str, key: str, digits: int = 4) -> tuple[str, float]:
        v = np.array([r[key] for r in rows if r["model"] == model], float)
        return fmt(float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else None, digits), float(v.mean())

    names = [NAMES[p] for p in peers]
    lines = [f"SASRec against {', '.join(names)}, ml100k-multimodal leave-last-out ({users} users, full "
             f"ranking, training films masked), seeds {', '.join(map(str, seeds))}.", "",
             "| model | NDCG@10 | Recall@10 | best epoch | fit s |", "|---|---:|---:|---:|---:|"]
    for model in (*names, "mosaicrec sasrec"):
        lines.append(f"| {model} | {stat(model, 'ndcg@10')[0]} | {stat(model, 'recall@10')[0]} | "
                     f"{stat(model, 'best_epoch', 1)[0]} | {stat(model, 'seconds', 0)[0]} |")

    def ratio(peer: str, key: str) -> str:
        theirs = stat(peer, key)[1]
        return f"{stat('mosaicrec sasrec', key)[1] / theirs:.2f}" if theirs else "—"

    for peer in names:
        lines.append(f"| ratio (ours / {peer}) | {ratio(peer, 'ndcg@10')} | {ratio(peer, 'recall@10')} | | |")
    write_result(RESULTS, "peer_sasrec", {"seeds": seeds, "seconds": round(seconds, 1), "users": users, "rows": rows},
                 "\n".join(lines) + "\n")
    console.print("\n".join(lines))


def table_from_log(peers: list[str], console: Console) -> None:
    """The table from peer_sasrec.jsonl, for seeds run as separate processes (the last row of each
    (seed, model) counts)."""
    rows = {}
    for line in (RESULTS / "peer_sasrec.jsonl").read_text().splitlines():
        r = json.loads(line)
        rows[(r["seed"], r["model"])] = r
    users = len(leave_last_out(load_dataset("ml100k-multimodal").interactions)[1].users)
    write_table(list(rows.values()), peers, users, sum(r["seconds"] for r in rows.values()), console)


if __name__ == "__main__":
    main()
