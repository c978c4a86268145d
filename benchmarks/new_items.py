"""Benchmark: do items added while serving land on the model's score scale? (issue 13)

The measure from the issue: add a byte-identical copy of an item a user would get in their top 20 (here the
item at rank 6) through the service's own add-item path (encoded by the catalog's encoders, then placed),
and check that the copy lands in the user's top 20, beside its original. Real data: ml100k-multimodal,
plots (MiniLM) and posters (EfficientNet-Lite0), ratings ≥ 4 as likes; ALS (factor model, its copy joins
retrieval through its proxy vector) and EASE (scores mixed through the proxy).

Baseline, in the same run on the same copies: the placement the service used before, a z-score of the
item's content similarity to the user's likes mapped onto the spread of the user's model scores (a copied
rock track ranked 375 of 376 for a rock fan with it). Reported per model: share of copies in the top 20,
mean |rank of copy − rank of original| over the full ranking, for ours and the baseline.

Content comes from the embedding cache (the first run encodes 1,682 plots and posters, ≈2 min).
Writes benchmarks/results/new_items.json and .md. Usage: python benchmarks/new_items.py [--users 150]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from mosaicrec.data import load_dataset
from mosaicrec.data.store import Store
from mosaicrec.encoders import ContentConfig, encode_content
from mosaicrec.models.training import TrainingInfo, fit_on_dataset
from mosaicrec.ranking.live import history_indices
from mosaicrec.serving.service import Service
from mosaicrec.evaluation.provenance import write_result

RESULTS = Path(__file__).parent / "results"


def baseline_scores(service: Service, user: str, rows: np.ndarray, sample_size: int = 2048) -> np.ndarray:
    """The old placement of added items: content z-score vs the user's likes, on the user's score spread."""
    snap = service.snapshot
    cv = snap.content
    hist = history_indices(service.live.get(user).positives, snap.catalog.index)
    profile = cv.vectors[hist].mean(axis=0)
    n_model = snap.n_model
    sample = np.sort(np.random.default_rng(0).choice(n_model, min(n_model, sample_size), replace=False))
    sim = cv.vectors[sample] @ profile
    z = (cv.vectors[rows] @ profile - sim.mean()) / max(float(sim.std()), 1e-6)
    model_scores = service.user_scores(user)[:n_model][sample]
    known = model_scores[np.isfinite(model_scores)]
    return float(known.mean()) + float(known.std()) * z


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=150)
    args = ap.parse_args()
    console = Console()
    data = load_dataset("ml100k-multimodal")
    content = encode_content(data.items, ContentConfig(encoders={"text": "minilm", "image": "efficientnet-lite0"},
                                                       text_fields=["title", "description"]), console=console).content
    rows_out = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store.duckdb"
        with Store(store) as st:
            ev = data.interactions
            st.ingest(items=data.items, events=pd.DataFrame({
                "user_id": ev.user_ids[ev.users], "item_id": ev.item_ids[ev.items], "timestamp": ev.timestamps,
                "event_type": "rating", "weight": ev.weights, "context": "{}"}), meta={"rating_scale": [1, 5]})
        for name, params in (("als", {"factors": 64, "iterations": 15}), ("ease", {"reg": 300.0})):
            model = fit_on_dataset(data, name, params, threshold=4.0)
            info = TrainingInfo(threshold=4.0, encoders={m: {"name": s.split("@")[0]} for m, s in content.sources.items()},
                                text_fields=["title", "description"])
            service = Service(model, store, content, info=info, log_impressions=False)
            users = np.random.default_rng(0).choice(sorted(service.snapshot.view.users), args.users, replace=False)
            ours_in, base_in, ours_gap, base_gap = [], [], [], []
            t0 = time.perf_counter()
            for j, user in enumerate(users):
                top = [r.item_id for r in service.recommend(user, 20).items]
                original = top[5]
                row = service.item(original)
                copy = f"copy{j}-{name}"
                service.add_items(pd.DataFrame([{**row, "item_id": copy}]))
                ranked = [r.item_id for r in service.recommend(user, 2000).items]
                ours_in.append(copy in ranked[:20])
                ours_gap.append(abs(ranked.index(copy) - ranked.index(original)))
                # the baseline's score for the same copy, ranked among the same model scores
                snap = service.snapshot
                at = snap.catalog.index[copy]
                scores = service.user_scores(user)
                old = baseline_scores(service, user, np.array([at]))[0]
                others = np.array([scores[snap.catalog.index[i]] for i in ranked if i != copy])
                base_rank = int((others > old).sum())
                base_in.append(base_rank < 20)
                base_gap.append(abs(base_rank - ranked.index(original)))
            secs = time.perf_counter() - t0
            row = {"model": name, "users": len(users), "ours_in_top20": round(float(np.mean(ours_in)), 3),
                   "baseline_in_top20": round(float(np.mean(base_in)), 3),
                   "ours_rank_gap": round(float(np.mean(ours_gap)), 2),
                   "baseline_rank_gap": round(float(np.mean(base_gap)), 1),
                   # ours / baseline; "inf" where the baseline placed no copy in the top 20
                   "ratio_in_top20": round(float(np.mean(ours_in)) / float(np.mean(base_in)), 2)
                   if np.mean(base_in) > 0 else "inf",
                   "seconds_per_added_item": round(secs / len(users), 3)}
            rows_out.append(row)
            console.print(row)
            service.close()
    table = Table(title="copies of an item in a user's top 20, added while serving (ml100k-multimodal)")
    cols = list(rows_out[0])
    for c in cols:
        table.add_column(c)
    for r in rows_out:
        table.add_row(*[str(r[c]) for c in cols])
    console.print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    md = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)] + \
        ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows_out]
    write_result(RESULTS, "new_items", {"rows": rows_out}, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
