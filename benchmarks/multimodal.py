"""Benchmark: does content pay? Multimodal and cold-start models on ml100k-multimodal, over seeds, tuned on
validation (issue 14).

The same code path as ``mosaicrec evaluate`` with ``seeds``, ``[tuning]``, ``[content]`` and
``[cold_start]``: for each seed, a warm 80/20 split (ratings ≥ 4 are positives), **new items** (20% of
films held out with all their ratings; every held-out film is a candidate, ranked among the held-out
films) and **new users** (20% of users held out, each shown by their first 3 positives and a MiniLM profile).
Every model's hyper-parameters are chosen per seed and scenario by Optuna (TPE) on a validation part
carved out of that scenario's training part by the same kind of split (pseudo-new items and users for the
cold scenarios); the test part is scored once. The warm part is also reported on its sparse slices:
users with ≤ 20 training positives, and test items with ≤ 10.

Content, one feature each (all from the catalog, encoded once into the embedding cache):
``text`` (title + plot, MiniLM), ``crew`` (TF-IDF over director, writer, cast and genres, with word pairs so
names are terms), ``meta`` (TF-IDF over genres, year and age rating), ``image`` (poster, EfficientNet-Lite0).

Two parts, run apart because of their cost on 2 cores:
- ``--part content`` (default): interaction-only baselines (MostPopular, EASE, ALS, ItemKNN), content-KNN,
  content-EASE and content-map (content → ALS factors) with each content set, the fusion weights learned
  on validation, and the new-user popularity prior;
- ``--part neural``: the BPR-trained neural models (hybrid with each fusion, with and without InfoNCE
  alignment, VBPR, graph, two-tower) and the peer, Cornac's VBPR, on the same warm splits with the same
  features (ratio ours / Cornac). Their fits take 10-60 s each on 2 cores, so by default they run with
  their default settings (15 epochs at most); ``--trials N`` tunes them and BPR on validation with N
  Optuna trials per seed and scenario over the built-in spaces (lr, L2, and on new items the BPR or random
  start), about N+1 times longer. Each neural model's BPR start takes the run's BPR settings in the same
  seed and scenario (``start_from``), tuned ones with ``--trials``.

Paired comparisons (per user, pooled over seeds; t-test and sign test) answer the issue's questions:
content vs the best interaction-only model (warm, sparse), new-user models vs MostPopular, fusion vs text
alone. Writes benchmarks/results/multimodal[-neural].json and .md.
Usage: python benchmarks/multimodal.py [--part content|neural] [--seeds 0 1 2] [--trials 20] [--tune LABEL ...]
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

from mosaicrec.data import load_dataset
from mosaicrec.data.schema import Interactions
from mosaicrec.data.splits import SplitConfig
from mosaicrec.encoders import ContentConfig, encode_content
from mosaicrec.evaluation.protocol import EvaluationConfig
from mosaicrec.evaluation.runner import ColdStartConfig, environment, run_experiment
from mosaicrec.evaluation.stats import fmt, fmt_p, paired
from mosaicrec.evaluation.tuning import TuningConfig
from mosaicrec.fusion import concat_features
from mosaicrec.models.base import BaseRecommender, ModelConfig
from mosaicrec.models.registry import ModelSpec, register
from mosaicrec.evaluation.provenance import write_result
from scale import warm_up  # benchmarks/ is on the path of a script run from it

RESULTS = Path(__file__).parent / "results"
CONTENT = ContentConfig(
    encoders={"text": "minilm", "crew": "tfidf", "meta": "tfidf", "image": "efficientnet-lite0"},
    text_fields=["title", "description"],
    fields={"crew": ["director", "writer", "cast", "genres"], "meta": ["genres", "year", "age_rating"]},
    params={"crew": {"ngrams": 2, "dim": 256}, "meta": {"dim": 64, "min_df": 1}})
TEXT, WORDS, ALL = ["text"], ["text", "crew", "meta"], ["text", "crew", "meta", "image"]
LOG = {"log": True}
CF_SPACE = {"factors": [16, 32, 64], "regularization": {"low": 0.1, "high": 100.0, **LOG},
            "alpha": {"low": 0.5, "high": 40.0, **LOG}, "map_reg": {"low": 1.0, "high": 300.0, **LOG}}
MAP_SPACE = {**CF_SPACE, "warm_content": {"low": 0.0, "high": 30.0}}
WEIGHTS = {f"fusion.weights.{m}": {"low": 0.0, "high": 1.0} for m in ("crew", "meta", "image")}
#: the new-user prior: the popularity weight, the window it is counted over (0: all time), and the onboarding map
PRIOR = {"history_popularity": {"low": 0.0, "high": 4.0},
         "popularity_window_days": [0.0, 14.0, 30.0, 60.0, 120.0, 240.0],
         "onboarding_weight": {"low": 0.0, "high": 3.0}, "onboarding_reg": {"low": 10.0, "high": 3000.0, **LOG},
         "onboarding_events": [3, 5, 10]}


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
        feats = concat_features(self.content_, ALL, center=True)
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

    def _scores(self, query) -> np.ndarray:
        out = np.full((len(query), len(self._cols)), -1e9, np.float32)
        known = self._cols >= 0
        for r, u in enumerate(query.users):
            if self._users[u] >= 0:
                out[r, known] = self._model.score(int(self._users[u]))[self._cols[known]]
        return out


def s(name: str, label: str, start_from: str | None = None, **params: Any) -> ModelSpec:
    return ModelSpec(name=name, label=label, params=params, start_from=start_from)


def content_specs() -> tuple[list[ModelSpec], dict[str, dict]]:
    """The fast models and their search spaces."""
    specs = [
        s("mostpop", "MostPopular"),
        s("ease", "EASE"),
        s("als", "ALS"),
        s("itemknn", "ItemKNN"),
        s("content-knn", "content-KNN (text)", fusion={"modalities": TEXT}),
        s("content-knn", "content-KNN (text+crew+meta)", fusion={"modalities": WORDS}),
        s("content-ease", "content-EASE (text+crew+meta)", fusion={"modalities": WORDS}),
        s("content-map", "content-map (text)", fusion={"modalities": TEXT}),
        s("content-map", "content-map (text+crew+meta)", fusion={"modalities": WORDS}),
        s("content-map", "content-map (all, weights tuned)", fusion={"modalities": ALL}),
        # the baseline new-item models are measured against: a plain ridge map from the text to ALS's factors
        s("content-map", "ridge map (text)", fusion={"modalities": TEXT}, weigh_by_events=False, rescale=False),
    ]
    spaces = {
        "ItemKNN": {"neighbors": {"low": 20, "high": 800, "integer": True, **LOG}, **PRIOR},
        "EASE": {"reg": {"low": 50.0, "high": 50000.0, **LOG}, **PRIOR},
        "content-EASE (text+crew+meta)": {"reg": {"low": 50.0, "high": 50000.0, **LOG},
                                          "content_weight": {"low": 1.0, "high": 1000.0, **LOG}, **PRIOR},
        "ALS": {k: v for k, v in CF_SPACE.items() if k != "map_reg"},
        "content-map (text)": MAP_SPACE,
        "content-map (text+crew+meta)": {**MAP_SPACE, **{k: v for k, v in WEIGHTS.items() if "image" not in k}},
        "content-map (all, weights tuned)": {**MAP_SPACE, **WEIGHTS},
        "ridge map (text)": CF_SPACE,
        "content-KNN (text)": {"neighbors": {"low": 5, "high": 800, "integer": True, **LOG}},
        "content-KNN (text+crew+meta)": {"neighbors": {"low": 5, "high": 800, "integer": True, **LOG},
                                         **{k: v for k, v in WEIGHTS.items() if "image" not in k}},
    }
    return specs, spaces


def neural_specs(epochs: int) -> tuple[list[ModelSpec], dict[str, dict]]:
    n = {"epochs": epochs, "start_from": "BPR"}  # each BPR start is the BPR tuned in the same seed and scenario
    specs = [
        s("ease", "EASE"),
        s("bpr", "BPR", factors=64, iterations=100),
        s("hybrid", "hybrid: text", **n, fusion={"modalities": TEXT}),
        s("hybrid", "hybrid: concat (all)", **n, fusion={"modalities": ALL}),
        s("hybrid", "hybrid: gated (all)", **n, fusion={"modalities": ALL, "kind": "gated"}),
        s("hybrid", "hybrid: attention (all)", **n, fusion={"modalities": ALL, "kind": "attention"}),
        s("hybrid", "hybrid: attention + InfoNCE", **n, fusion={"modalities": ALL, "kind": "attention"},
          pretrain_epochs=10, align_weight=0.1),
        s("vbpr", "VBPR (all)", **n, fusion={"modalities": ALL}),
        s("graph", "graph (all)", **n, fusion={"modalities": ALL}),
        s("two-tower", "two-tower (all, +profile)", **n, fusion={"modalities": ALL}),
    ]
    # BPR and the neural models take the built-in spaces (BPR: learning rate and L2; neural: lr and L2; on
    # new items also the start, BPR or random, since the BPR start trains the content part less; the
    # two-tower's user-id dropout)
    spaces = {"EASE": {"reg": {"low": 50.0, "high": 50000.0, **LOG}}}
    return specs, spaces


#: (question, scenario, model, against) pairs compared user by user
def comparisons(labels: list[str], part: str) -> list[tuple[str, str, str, str]]:
    out = []
    if part == "content":
        for sc in ("warm", "users ≤20", "items ≤10"):
            out.append(("content vs best interaction-only", sc, "content-EASE (text+crew+meta)", "EASE"))
            out.append(("content vs best interaction-only", sc, "content-map (all, weights tuned)", "ALS"))
        out += [("new users vs MostPopular", "new users", m, "MostPopular")
                for m in ("ItemKNN", "EASE", "content-EASE (text+crew+meta)", "content-map (all, weights tuned)")]
        out += [("fusion vs text alone", "new items", "content-map (text+crew+meta)", "content-map (text)"),
                ("fusion vs text alone", "new items", "content-map (all, weights tuned)", "content-map (text)"),
                ("poster on top of words", "new items", "content-map (all, weights tuned)",
                 "content-map (text+crew+meta)"),
                ("map vs KNN", "new items", "content-map (text)", "content-KNN (text)"),
                ("content-map vs the ridge map", "new items", "content-map (all, weights tuned)", "ridge map (text)")]
    else:
        out += [("fusion vs text alone", "new items", m, "hybrid: text")
                for m in ("hybrid: concat (all)", "hybrid: gated (all)", "hybrid: attention (all)")]
        out += [("InfoNCE alignment", sc, "hybrid: attention + InfoNCE", "hybrid: attention (all)")
                for sc in ("warm", "new items")]
        out += [("neural vs BPR", "warm", m, "BPR") for m in labels if m not in ("EASE", "BPR", "Cornac VBPR (peer)")]
    return [c for c in out if c[2] in labels and c[3] in labels]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["content", "neural"], default="content")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--trials", type=int, default=None, help="optuna trials per model, scenario and seed; "
                    "0: no tuning [default: 20 content, 0 neural]")
    ap.add_argument("--tune", nargs="*", help="with trials: labels to tune (default: every model with a space); "
                    "e.g. --tune BPR EASE tunes the baselines and keeps the neural models at their defaults, "
                    "their BPR starts following the tuned BPR")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--only", nargs="*", help="labels to run (default: all)")
    args = ap.parse_args()
    console = Console()
    data = load_dataset("ml100k-multimodal")
    content = encode_content(data.items, CONTENT, console=console).content
    specs, spaces = content_specs() if args.part == "content" else neural_specs(args.epochs)
    specs = [m for m in specs if not args.only or m.display in args.only]
    trials = args.trials if args.trials is not None else (20 if args.part == "content" else 0)
    tuning = TuningConfig(method="optuna", trials=trials, space=spaces, prune=True,
                          models=args.tune or None) if trials else None
    evaluation = EvaluationConfig(ks=[10, 20], metrics=["ndcg", "recall", "precision", "hitrate", "coverage"],
                                  sparse_users=20, sparse_items=10)
    split = SplitConfig(kind="random", test_fraction=0.2, rating_threshold=4, validation_fraction=0.2)
    cold = ColdStartConfig(items=0.2, users=0.2, support=3, profile_encoder="minilm")
    warm_up(specs)
    t0 = time.perf_counter()
    result = run_experiment(data, split, specs, evaluation, name=f"multimodal-{args.part}", console=console,
                            content=content, cold_start=cold, seeds=args.seeds, tuning=tuning)
    if args.part == "neural" and (not args.only or "Cornac VBPR (peer)" in args.only):
        # the peer on the same warm splits only: it cannot score items or users it has not seen
        peer = run_experiment(data, split, [s("cornac-vbpr", "Cornac VBPR (peer)", epochs=args.epochs)],
                              EvaluationConfig(ks=[10, 20], metrics=["ndcg", "recall"]), name="peer",
                              console=console, content=content, seeds=args.seeds)
        result.rows += peer.rows
    seconds = time.perf_counter() - t0
    write(result, args, seconds, console)


def write(result, args, seconds: float, console: Console) -> None:
    rows = {r.label: r for r in result.rows}
    scenarios = ["warm", "users ≤20", "items ≤10", "new items", "new users"]
    table_rows = []
    for r in result.rows:
        row: dict[str, Any] = {"model": r.label}
        for sc in scenarios:
            m, sd = (r.metrics, r.std) if sc == "warm" else (r.cold.get(sc, {}), r.cold_std.get(sc, {}))
            for k in ("ndcg@10", "recall@20"):
                row[f"{sc} {k}"] = (m[k], sd.get(k, 0.0)) if k in m else None
        warm_fits = [run["fit_seconds"] for run in r.runs if run["scenario"] == "warm"]
        row["fit_s"] = round(float(np.mean(warm_fits)), 2) if warm_fits else None
        # per seed, the warm epoch early stopping kept (-1: no epoch beat the BPR start on validation)
        kept = [run["best_epoch"] for run in r.runs if run["scenario"] == "warm" and "best_epoch" in run]
        row["epoch kept"] = ", ".join(map(str, kept)) if kept else None
        table_rows.append(row)
    cols = [c for c in table_rows[0] if any(t[c] is not None for t in table_rows)]
    compared = []
    for question, sc, model, against in comparisons(list(rows), args.part):
        for metric in ("ndcg@10", "recall@20"):
            a, b = rows[model].per_user.get((sc, metric)), rows[against].per_user.get((sc, metric))
            if a is not None and b is not None and len(a) == len(b):
                d = paired(a, b)
                base = float(np.mean(np.concatenate(b)))
                compared.append({"question": question, "scenario": sc, "model": model, "against": against,
                                 "metric": metric, "relative": d["diff"] / base if base else None, **d})
    peer = rows.get("Cornac VBPR (peer)")
    ours = rows.get("VBPR (all)")
    ratio = round(ours.metrics["ndcg@10"] / peer.metrics["ndcg@10"], 3) if peer and ours else None

    def cell(v) -> str:
        return "—" if v is None else fmt(*v) if isinstance(v, tuple) else str(v)
    table = Table(title=f"multimodal {args.part}, ml100k-multimodal, seeds {args.seeds}: mean ± std")
    for c in cols:
        table.add_column(c.replace("ndcg@10", "N@10").replace("recall@20", "R@20"),
                         justify="left" if c == "model" else "right")
    for r in table_rows:
        table.add_row(*[cell(r[c]) for c in cols])
    console.print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.part == "content" else "-neural"
    chosen = [{"model": r.label, **{k: v for k, v in run.items() if k != "metrics"}}
              for r in result.rows for run in r.runs if "chosen" in run]
    payload = {"meta": {"part": args.part, "seeds": args.seeds, "split": result.split,
                        "environment": environment(), "seconds": round(seconds, 1),
                        "content": CONTENT.model_dump()},
               "vbpr_ratio_vs_cornac": ratio,
               "rows": [{k: (list(v) if isinstance(v, tuple) else v) for k, v in r.items()} for r in table_rows],
               "paired": compared, "chosen": chosen}
    tuned = sorted({c["model"] for c in chosen})
    how = "fixed settings, not tuned" if not tuned else "tuned on validation" if len(tuned) == len(rows) \
        else f"tuned on validation: {', '.join(tuned)}; the others at fixed settings"
    md = [f"# Multimodal {args.part} (ml100k-multimodal; seeds {', '.join(map(str, args.seeds))}; "
          f"{how}; {seconds / 60:.0f} min)", "",
          "Mean ± std over seeds. Slices of the warm split: `users ≤20` (users with at most 20 training "
          "positives), `items ≤10` (only test items with at most 10 training positives count as relevant).", ""]
    if ratio is not None:
        md += [f"VBPR ours / Cornac VBPR, warm NDCG@10: **{ratio}**", ""]
    md += ["| " + " | ".join(cols) + " |", "|---|" + "---:|" * (len(cols) - 1)]
    md += ["| " + " | ".join(cell(r[c]) for c in cols) + " |" for r in table_rows]
    md += ["", "## Paired comparisons (per user, pooled over seeds)", "",
           "| question | scenario | model | against | metric | Δ | relative | 95% CI | per seed | p (t) | p (sign) |",
           "|---|---|---|---|---|---:|---:|---|---:|---:|---:|"]
    for c in compared:
        rel = "—" if c["relative"] is None else f"{100 * c['relative']:+.1f}%"
        md.append(f"| {c['question']} | {c['scenario']} | {c['model']} | {c['against']} | {c['metric']} | "
                  f"{c['diff']:+.4f} | {rel} | [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}] | "
                  f"{fmt(c['seed_diff_mean'], c['seed_diff_std'])} | {fmt_p(c['p_ttest'])} | {fmt_p(c['p_sign'])} |")
    md += ["", "## Chosen hyper-parameters (per seed and scenario, on validation)", "",
           "| model | scenario | seed | chosen | validation | trials (pruned) |", "|---|---|---:|---|---:|---:|"]
    for c in chosen:
        values = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in c["chosen"].items())
        md.append(f"| {c['model']} | {c['scenario']} | {c['seed']} | {values} | {c['validation']:.4f} | "
                  f"{c['trials']} ({c['pruned']}) |")
    write_result(RESULTS, f"multimodal{suffix}", json.loads(json.dumps(payload, default=str)), "\n".join(md) + "\n")
    console.print(f"wrote {RESULTS / f'multimodal{suffix}.json'} and .md")


if __name__ == "__main__":
    main()
