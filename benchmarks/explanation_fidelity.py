"""Benchmark: are "because you liked X" reasons true? Fidelity per model and way of citing (issue 16).

ml100k-multimodal, ratings ≥ 4 as likes, a seeded random split (80% train). For a seeded sample of users,
each user is folded in from their last 50 training likes and gets a top 10 (likes excluded). Each
recommended item is given a reason three ways:

* **model**: the history item whose removal lowers the item's score most (leave-one-out through the model,
  :mod:`mosaicrec.ranking.reasons`): what the service should cite;
* **content**: the history item closest to it in content (the service's "similar to X (closest in text)");
* **random**: a history item drawn at random: the baseline.

Fidelity: the share of reasons whose removal from the history lowers the item's score, and the share for
which the item moves down the list. Mean ± std over seeds. For the model's own reasons, also the share
that the knowledge graph (the public ML-100K KG joined with the films' crew, cast and genres) links to
the item, and by what kind of entity (a person who made or acted in both, or only a genre or the like).

Writes benchmarks/results/explanation_fidelity.json and .md.
Usage: python benchmarks/explanation_fidelity.py [--seeds 0 1 2] [--users 300]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from mosaicrec.data import load_dataset
from mosaicrec.data.kg import load_item_kg
from mosaicrec.data.splits import SplitConfig, split
from mosaicrec.encoders import ContentConfig, encode_content
from mosaicrec.evaluation.stats import fmt
from mosaicrec.fusion import concat_features
from mosaicrec.models import create
from mosaicrec.ranking.reasons import cite_by_model, fidelity
from mosaicrec.ranking.rerank import explain
from mosaicrec.evaluation.provenance import write_result

RESULTS = Path(__file__).parent / "results"
MODELS = {"ease": {"reg": 250.0}, "itemknn": {"neighbors": 100}, "als": {"factors": 64, "iterations": 15},
          "content-knn": {}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--users", type=int, default=300)
    args = ap.parse_args()
    console = Console()
    t0 = time.perf_counter()
    data = load_dataset("ml100k-multimodal")
    content = encode_content(data.items, ContentConfig(encoders={"text": "minilm"}), console=console).content
    x = data.interactions
    aligned = content.align(x.item_ids)
    vecs = concat_features(aligned, aligned.modalities)
    vecs = vecs / (np.linalg.norm(vecs, axis=1, keepdims=True) + 1e-12)
    kg = load_item_kg(data.items)
    kg_row = {str(i): k for k, i in enumerate(kg.item_ids)}
    to_kg = np.array([kg_row.get(str(i), -1) for i in x.item_ids])
    facts, degree = kg.item_facts(), kg.degree()
    people = {"director", "writer", "cast", "film.film.directed_by", "film.film.written_by", "film.film.actor"}
    runs: dict[str, dict[str, list[float]]] = {}
    for seed in args.seeds:
        train, _ = split(x, SplitConfig(kind="random", test_fraction=0.2, seed=seed))
        liked = train.subset(train.weights >= 4)
        rng = np.random.default_rng(seed)
        order = np.lexsort((liked.timestamps, liked.users))
        users = rng.choice(np.unique(liked.users), args.users, replace=False)
        histories = [liked.items[order][liked.users[order] == u] for u in users]
        citers = {
            "model": lambda h, items, loo: cite_by_model(loo, items),
            "content": lambda h, items, loo: np.array([
                int(np.flatnonzero(h == c)[-1]) if c is not None else -1
                for c, _ in explain(items, h, {"text": vecs}, {"text": np.ones(len(vecs), bool)})]),
            "random": lambda h, items, loo, r=np.random.default_rng(seed): r.integers(0, len(h), len(items)),
        }
        for name, params in MODELS.items():
            model = create(name, params).fit(liked, content=content if name.startswith("content") else None)
            kinds: list[str] = []

            def on_cited(how, items, cited, kinds=kinds):
                if how != "model":
                    return
                for i, h in zip(to_kg[items].tolist(), to_kg[cited].tolist()):
                    p = kg.path(i, h, facts, degree) if i >= 0 and h >= 0 else None
                    kinds.append("none" if p is None else "person" if p.relation in people and kg.names[p.entity]
                                 else "sequel" if p.entity < 0 else "other")

            got = fidelity(model, histories, x.n_items, 10, citers, on_cited=on_cited)
            kinds_arr = np.array(kinds)
            for kind in ("person", "sequel", "other", "none"):
                runs.setdefault(f"{name}|kg", {}).setdefault(kind, []).append(float(np.mean(kinds_arr == kind)))
            for how, f in got.items():
                for metric, v in f.items():
                    runs.setdefault(f"{name}|{how}", {}).setdefault(metric, []).append(v)
            console.print(f"seed {seed} {name}: " + "; ".join(f"{h} score {f['score']:.3f} rank {f['rank']:.3f}"
                                                              for h, f in got.items()))
    seconds = time.perf_counter() - t0
    RESULTS.mkdir(exist_ok=True)
    lines = [f"Fidelity of cited reasons: ml100k-multimodal, {args.users} users × top 10, {len(args.seeds)} seeds "
             f"(mean ± std). Share of reasons whose removal lowers the item's score / its rank.", "",
             "| model | cited by | lowers the score | lowers the rank | items with a reason |", "|---|---|---:|---:|---:|"]
    for key, m in runs.items():
        model, how = key.split("|")
        if how == "kg":
            continue
        sd = (lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else None)
        lines.append(f"| {model} | {how} | {fmt(float(np.mean(m['score'])), sd(m['score']), 3)} | "
                     f"{fmt(float(np.mean(m['rank'])), sd(m['rank']), 3)} | {fmt(float(np.mean(m['cited'])), None, 3)} |")
    lines += ["", "Knowledge-graph paths for the model's own reasons: share of (item, cited like) pairs joined through a "
              "named person (director, writer, actor), a sequel edge, anything else (genre, language, award…), "
              "or nothing.", "", "| model | person | sequel | other | none |", "|---|---:|---:|---:|---:|"]
    for key, m in runs.items():
        model, how = key.split("|")
        if how == "kg":
            lines.append(f"| {model} | " + " | ".join(
                fmt(float(np.mean(m[k])), float(np.std(m[k], ddof=1)) if len(m[k]) > 1 else None, 3)
                for k in ("person", "sequel", "other", "none")) + " |")
    write_result(RESULTS, "explanation_fidelity", {"runs": runs, "seeds": args.seeds, "users": args.users,
                                                   "seconds": seconds}, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
