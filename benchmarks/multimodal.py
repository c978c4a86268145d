"""Benchmark: multimodal and cold-start ablation on ml100k-multimodal (real plots and posters).

One experiment (the same code path as ``mosaicrec evaluate`` with a [content] and [cold_start] section):
warm random split, new items (20% of items held out with all their events, ranked among themselves) and
new users (20% of users held out, each shown by their first 3 positives and a profile embedding). Rows:
interaction-only baselines (MostPopular, EASE, BPR), content-KNN on TF-IDF and on pretrained embeddings,
content-EASE, VBPR, the hybrid with each modality alone and both, each fusion variant (concat, gated,
attention, attention + InfoNCE pre-training and alignment), the graph model and the two-tower model.

Peer: Cornac's VBPR on the same warm split, with the same fused features, width and epochs, scored by the
same evaluation code; the ratio is ours / Cornac's NDCG@10. (Cornac's VBPR only scores items seen in
training, so it has no cold-start row.)

Content comes from the embedding cache (``.mosaicrec/embeddings.duckdb``): the first run encodes 1,682 plots
and posters (≈2 min), later runs read them back.
Writes benchmarks/results/multimodal.json and .md; prints a rich table.
Usage: python benchmarks/multimodal.py [--epochs 15] [--only LABEL ...]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from mosaicrec.data import load_dataset
from mosaicrec.data.schema import Interactions
from mosaicrec.encoders import ContentConfig, encode_content
from mosaicrec.evaluation.runner import ColdStartConfig, environment, run_experiment
from mosaicrec.data.splits import SplitConfig
from mosaicrec.fusion import concat_features
from mosaicrec.models.base import BaseRecommender, ModelConfig, ModelSpec, register

RESULTS = Path(__file__).parent / "results"
BOTH = ["text", "image"]


class CornacVBPRConfig(ModelConfig):
    dim: int = 64
    epochs: int = 15
    lr: float = 0.005
    seed: int = 42


@register("cornac-vbpr")
class CornacVBPR(BaseRecommender):
    """Adapter: Cornac's VBPR fitted on our training events and the same fused item features."""

    Config = CornacVBPRConfig
    needs_content = True

    def _fit(self, train: Interactions) -> None:
        import cornac
        from cornac.data import ImageModality

        cfg = self.config
        feats = concat_features(self.content_, BOTH)
        triplets = [(str(u), str(i), 1.0) for u, i in zip(train.users, train.items)]
        ts = cornac.data.Dataset.from_uir(triplets, seed=cfg.seed)
        modality = ImageModality(features=feats, ids=[str(i) for i in range(train.n_items)], normalized=True)
        modality.build(id_map=ts.iid_map)
        ts.add_modalities(item_image=modality)
        model = cornac.models.VBPR(k=cfg.dim // 2, k2=cfg.dim // 2, n_epochs=cfg.epochs, learning_rate=cfg.lr,
                                   batch_size=256, seed=cfg.seed, verbose=False)
        model.fit(ts)
        self._model, self._ts = model, ts
        self._cols = np.array([ts.iid_map.get(str(i), -1) for i in range(train.n_items)])
        self._users = np.array([ts.uid_map.get(str(u), -1) for u in range(train.n_users)])

    def _score_all(self, users: np.ndarray) -> np.ndarray:
        out = np.full((len(users), len(self._cols)), -1e9, np.float32)
        known = self._cols >= 0
        for r, u in enumerate(users):
            if self._users[u] >= 0:
                out[r, known] = self._model.score(int(self._users[u]))[self._cols[known]]
        return out


def specs(epochs: int) -> list[ModelSpec]:
    n = {"epochs": epochs}
    both = {"modalities": BOTH}

    def s(name, label, **params):
        return ModelSpec(name=name, label=label, params=params)
    return [
        s("mostpop", "MostPopular"),
        s("ease", "EASE", reg=500.0),
        s("bpr", "BPR", factors=64, iterations=100),
        s("content-knn", "content-KNN (TF-IDF)", fusion={"modalities": ["tfidf"]}),
        s("content-knn", "content-KNN (text+image)", fusion=both),
        s("content-ease", "content-EASE (text+image)", reg=500.0, fusion=both),
        s("vbpr", "VBPR (text+image)", **n, fusion=both),
        s("cornac-vbpr", "Cornac VBPR (peer)", epochs=epochs),
        s("hybrid", "hybrid: text only", **n, fusion={"modalities": ["text"]}),
        s("hybrid", "hybrid: image only", **n, fusion={"modalities": ["image"]}),
        s("hybrid", "hybrid: concat", **n, fusion=both),
        s("hybrid", "hybrid: gated", **n, fusion={**both, "kind": "gated"}),
        s("hybrid", "hybrid: attention", **n, fusion={**both, "kind": "attention"}),
        s("hybrid", "hybrid: attention + InfoNCE", **n, fusion={**both, "kind": "attention"},
          pretrain_epochs=10, align_weight=0.1),
        s("graph", "graph (FREEDOM-style)", **n, fusion=both),
        s("two-tower", "two-tower (+profile)", **n, fusion=both),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--only", nargs="*", help="labels to run (default: all)")
    args = ap.parse_args()
    console = Console()
    data = load_dataset("ml100k-multimodal")
    content_cfg = ContentConfig(encoders={"text": "minilm", "image": "efficientnet-lite0", "tfidf": "tfidf"},
                                text_fields=["title", "description"])
    content = encode_content(data.items, content_cfg, console=console).content
    models = [m for m in specs(args.epochs) if not args.only or m.display in args.only]
    peers = [m for m in models if m.name == "cornac-vbpr"]
    models = [m for m in models if m.name != "cornac-vbpr"]
    split = SplitConfig(kind="random", test_fraction=0.2, rating_threshold=4, seed=42)
    cold = ColdStartConfig(items=0.2, users=0.2, support=3, profile_encoder="minilm")
    t0 = time.perf_counter()
    result = run_experiment(data, split, models, name="multimodal", console=console, content=content,
                            cold_start=cold)
    if peers:  # the peer on the same warm split only: it cannot score items or users it has not seen
        result.rows += run_experiment(data, split, peers, name="peer", console=console, content=content).rows
    rows = []
    for r in result.rows:
        row = {"model": r.label, "fit_s": round(r.fit_seconds, 2),
               "warm ndcg@10": r.metrics.get("ndcg@10"), "warm recall@20": r.metrics.get("recall@20")}
        for sc in ("new items", "new users"):
            m = r.cold.get(sc, {})
            row[f"{sc} ndcg@10"], row[f"{sc} recall@20"] = m.get("ndcg@10"), m.get("recall@20")
        rows.append(row)
    by = {r["model"]: r for r in rows}
    peer = by.get("Cornac VBPR (peer)", {}).get("warm ndcg@10")
    ours = by.get("VBPR (text+image)", {}).get("warm ndcg@10")
    ratio = round(ours / peer, 3) if peer and ours else None
    cols = list(rows[0])
    table = Table(title=f"multimodal ablation, ml100k-multimodal ({args.epochs} epochs); "
                        f"VBPR ours / Cornac warm NDCG@10 = {ratio}")
    for c in cols:
        table.add_column(c, justify="left" if c == "model" else "right")
    for r in rows:
        table.add_row(*["—" if r[c] is None else (f"{r[c]:.4f}" if isinstance(r[c], float) and c != "fit_s"
                                                  else str(r[c])) for c in cols])
    console.print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"meta": {"epochs": args.epochs, "split": result.split, "environment": environment(),
                        "seconds": round(time.perf_counter() - t0, 1),
                        "content": {k: v for k, v in content.sources.items()}},
               "vbpr_ratio_vs_cornac": ratio, "rows": rows}
    (RESULTS / "multimodal.json").write_text(json.dumps(payload, indent=2, default=str))
    md = ["| " + " | ".join(cols) + " |", "|---|" + "---:|" * (len(cols) - 1)]
    md += ["| " + " | ".join("—" if r[c] is None else (f"{r[c]:.4f}" if isinstance(r[c], float) and c != "fit_s"
                                                        else str(r[c])) for c in cols) + " |" for r in rows]
    (RESULTS / "multimodal.md").write_text(
        f"# Multimodal ablation (ml100k-multimodal, {args.epochs} epochs)\n\nVBPR ours / Cornac VBPR warm "
        f"NDCG@10: {ratio}\n\n" + "\n".join(md) + "\n")
    console.print(f"wrote {RESULTS / 'multimodal.json'} and .md")


if __name__ == "__main__":
    main()
