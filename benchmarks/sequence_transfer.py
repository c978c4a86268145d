"""Benchmark: a sequential model whose items are their content scores a catalog it never saw (issue 15).

ml100k-multimodal's films are cut in two catalogs by their first genre (genres ordered by size and dealt
alternately: A holds Drama, Action, Horror, Documentary …, B holds Comedy, Crime, Adventure, Children's …).
Every user's history is cut the same way. Rows, scored on catalog **B** only: each user's last B film (by
time) is the test item, their earlier B films the history it is predicted from, ranked among all B films
with the history excluded (leave-last-out, full ranking within B).

* zero-shot, fitted on catalog A's events only (no B film was ever a training item):
  - ``sasrec (content), trained on A``: SASRec whose items are projections of their content;
  - ``content-knn, fitted on A``: films most like the history by content (no learnt order);
  - ``random``;
* references fitted on B's own training part (what a catalog with its own data reaches):
  ``mostpop on B``, ``sasrec (id) on B``, ``sasrec (content) on B``.

Mean ± std over seeds (SASRec's seed; the cut has no randomness). Ratio: zero-shot SASRec / MostPop on B.
Writes benchmarks/results/sequence_transfer.json and .md.
Usage: python benchmarks/sequence_transfer.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
from rich.console import Console

from mosaicrec.data import load_dataset
from mosaicrec.data.splits import leave_last_out
from mosaicrec.encoders import encode_content
from mosaicrec.evaluation.protocol import EvaluationConfig, evaluate_ranking
from mosaicrec.evaluation.stats import fmt
from mosaicrec.models import create
from mosaicrec.models.query import Query
from multimodal import CONTENT  # the same content as the multimodal benchmark (benchmarks/ on the path)

RESULTS = Path(__file__).parent / "results"
EVAL = EvaluationConfig(ks=[10, 20], metrics=["ndcg", "recall"])


def catalogs(items) -> np.ndarray:
    """True for catalog A: the film's first genre is one of the genres dealt to A."""
    first = [(a.get("genres") or ["unknown"])[0] if isinstance(a, dict) else "unknown" for a in items["attributes"]]
    order = [g for g, _ in Counter(first).most_common()]
    to_a = {g for n, g in enumerate(order) if n % 2 == 0}
    return np.array([g in to_a for g in first])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=200, help="SASRec's most epochs (early stopping chooses)")
    args = ap.parse_args()
    console = Console()
    t_start = time.perf_counter()
    data = load_dataset("ml100k-multimodal")
    content = encode_content(data.items, CONTENT, console=console).content
    x = data.interactions
    in_a = catalogs(data.items)
    b_items = np.flatnonzero(~in_a)
    on_a, on_b = x.subset(in_a[x.items]), x.subset(~in_a[x.items])
    train_b, test_b = leave_last_out(on_b)
    users = np.flatnonzero(np.diff(test_b.binary.indptr) > 0)
    users = users[np.diff(train_b.binary.indptr)[users] > 0]  # a B history to predict from
    history = Query.of_events(train_b)
    console.print(f"catalog A: {in_a.sum()} films, {on_a.n_events} events; catalog B: {len(b_items)} films, "
                  f"{on_b.n_events} events; {len(users)} users scored")

    def zero_shot(model):
        def score(rows: np.ndarray) -> np.ndarray:
            return model.score_query(Query(history=history.history[rows], timestamps=history.timestamps[rows]))
        return evaluate_ranking(model, test_b, exclude=train_b.binary, config=EVAL, users=users,
                                candidates=b_items, score_fn=score).metrics

    def on_own(model):
        return evaluate_ranking(model, test_b, exclude=train_b.binary, config=EVAL, users=users,
                                candidates=b_items).metrics

    rows: list[dict] = []
    for seed in args.seeds:
        sas = {"seed": seed, "epochs": args.epochs, "refit": False}  # epochs chosen on each user's last event
        runs = {
            "sasrec (content), trained on A": lambda: zero_shot(
                create("sasrec", {**sas, "items": "content"}).fit(on_a, content=content)),
            "content-knn, fitted on A": lambda: zero_shot(create("content-knn").fit(on_a, content=content)),
            "random": lambda: random_metrics(seed),
            "mostpop on B": lambda: on_own(create("mostpop").fit(train_b)),
            "sasrec (id) on B": lambda: on_own(create("sasrec", sas).fit(train_b)),
            "sasrec (content) on B": lambda: on_own(
                create("sasrec", {**sas, "items": "content"}).fit(train_b, content=content)),
        }

        def random_metrics(seed: int) -> dict:
            model = create("mostpop").fit(train_b)
            rng = np.random.default_rng(seed)

            def score(rows: np.ndarray) -> np.ndarray:
                return rng.random((len(rows), x.n_items)).astype(np.float32)
            return evaluate_ranking(model, test_b, exclude=train_b.binary, config=EVAL, users=users,
                                    candidates=b_items, score_fn=score).metrics

        for name, run in runs.items():
            t0 = time.perf_counter()
            metrics = run()
            rows.append({"seed": seed, "model": name, "seconds": round(time.perf_counter() - t0, 1), **metrics})
            console.print(f"seed {seed} {name}: NDCG@10 {metrics['ndcg@10']:.4f} Recall@10 "
                          f"{metrics['recall@10']:.4f} ({rows[-1]['seconds']} s)")
    seconds = time.perf_counter() - t_start
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sequence_transfer.json").write_text(json.dumps(
        {"seeds": args.seeds, "seconds": round(seconds, 1), "films_a": int(in_a.sum()), "films_b": len(b_items),
         "users": len(users), "rows": rows}, indent=2))
    names = list(dict.fromkeys(r["model"] for r in rows))

    def stat(name: str, metric: str) -> tuple[float, float]:
        v = np.array([r[metric] for r in rows if r["model"] == name])
        return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0

    pop = stat("mostpop on B", "ndcg@10")[0]
    lines = [f"Catalog B ({len(b_items)} films, {len(users)} users), leave-last-out within B, full ranking "
             f"among B films; {len(args.seeds)} seeds, {seconds / 60:.0f} min.", "",
             "| model | trained on | NDCG@10 | Recall@10 | Recall@20 | NDCG@10 / MostPop on B |",
             "|---|---|---:|---:|---:|---:|"]
    for name in names:
        where = "A only (zero-shot)" if "on A" in name else ("nothing" if name == "random" else "B")
        lines.append(f"| {name} | {where} | {fmt(*stat(name, 'ndcg@10'))} | {fmt(*stat(name, 'recall@10'))} | "
                     f"{fmt(*stat(name, 'recall@20'))} | {stat(name, 'ndcg@10')[0] / pop:.2f} |")
    (RESULTS / "sequence_transfer.md").write_text("\n".join(lines) + "\n")
    console.print("\n".join(lines))


if __name__ == "__main__":
    main()
