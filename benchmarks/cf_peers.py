"""Benchmark: our ItemKNN, EASE, BPR and ALS against the same algorithms in established libraries, in one
process, on the same splits, scored by the same full-ranking evaluation.

Peers: implicit 0.7 (CosineRecommender, BayesianPersonalizedRanking, AlternatingLeastSquares) and Cornac
(EASE, with posB=False so that it is the same closed form as ours; Cornac's default posB=True clips
negative weights and is reported as an extra row). Each algorithm gets identical hyper-parameters on both
sides. Fit time is the best of 3 fits and excludes JIT compilation (our numba kernels are warmed up once on tiny data first; the
compile time is reported separately) and the CSR construction both sides share.

Writes benchmarks/results/cf_peers.json and cf_peers.md; prints a rich table.
Usage: python benchmarks/cf_peers.py [--seeds 0 1 2] [--dataset movielens-100k]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from mosaicrec.data import load_dataset, random_holdout, to_implicit
from mosaicrec.data.schema import Interactions
from mosaicrec.evaluation import EvaluationConfig, evaluate_ranking
from mosaicrec.evaluation.memory import PeakMemory
from mosaicrec.evaluation.provenance import write_result
from mosaicrec.models import create
from mosaicrec.models.base import BaseRecommender

RESULTS = Path(__file__).parent / "results"
PARAMS = {
    "itemknn": {"neighbors": 50},
    "ease": {"reg": 500.0},
    "bpr": {"factors": 64, "learning_rate": 0.01, "regularization": 0.01, "iterations": 100},
    "als": {"factors": 64, "regularization": 0.01, "alpha": 1.0, "iterations": 15},
}


class Peer(BaseRecommender):
    """Adapter: fits a peer library's model and exposes its scores through our protocol, so both sides
    are evaluated by exactly the same code."""

    name = "peer"

    def __init__(self, algorithm: str, library: str, seed: int, variant: str = "") -> None:
        super().__init__()
        self.algorithm, self.library, self.seed, self.variant = algorithm, library, seed, variant

    def _fit(self, train: Interactions) -> None:
        X = train.matrix
        a, p = self.algorithm, PARAMS[self.algorithm]
        if self.library == "implicit":
            from implicit.als import AlternatingLeastSquares
            from implicit.bpr import BayesianPersonalizedRanking
            from implicit.nearest_neighbours import CosineRecommender
            if a == "itemknn":
                # implicit keeps each item as its own neighbour (similarity 1, filtered at recommend time):
                # K = neighbours + 1 gives the same number of real neighbours as ours.
                m = CosineRecommender(K=p["neighbors"] + 1)
                m.fit(X, show_progress=False)
                self._score = lambda users: np.asarray((X[users] @ m.similarity).toarray(), np.float32)
                return
            if a == "bpr":
                m = BayesianPersonalizedRanking(factors=p["factors"], learning_rate=p["learning_rate"],
                                                regularization=p["regularization"],
                                                iterations=p["iterations"], random_state=self.seed)
            else:
                m = AlternatingLeastSquares(factors=p["factors"], regularization=p["regularization"],
                                            alpha=p["alpha"], iterations=p["iterations"],
                                            random_state=self.seed)
            m.fit(X, show_progress=False)
            U, V = np.asarray(m.user_factors), np.asarray(m.item_factors)
            self._score = lambda users: U[users] @ V.T
        elif self.library == "cornac":
            from cornac.data import Dataset as CornacDataset
            from cornac.models import EASE as CornacEASE
            coo = X.tocoo()
            triples = list(zip(coo.row.astype(str), coo.col.astype(str), coo.data.astype(float)))
            data = CornacDataset.from_uir(triples, seed=self.seed)
            m = CornacEASE(lamb=p["reg"], posB=self.variant == "posB", seed=self.seed, verbose=False)
            t0 = time.perf_counter()
            m.fit(data)
            self.peer_fit_seconds = time.perf_counter() - t0
            # Cornac renumbers items in order of appearance: map its B back to our item indices.
            perm = np.full(X.shape[1], -1)
            for raw, idx in data.iid_map.items():
                perm[int(raw)] = idx
            B = np.zeros((X.shape[1], X.shape[1]), np.float32)
            known = perm >= 0
            B[np.ix_(known, known)] = m.B[np.ix_(perm[known], perm[known])]
            self._score = lambda users: np.asarray(X[users] @ B, np.float32)
        else:
            raise ValueError(self.library)

    def _scores(self, query) -> np.ndarray:
        return self._score(query.users)


def warm_up() -> float:
    """Compile our numba kernels once (cached on disk after the first run of a checkout)."""
    tiny = Interactions.from_arrays(np.arange(20) % 5, np.arange(20) % 7, weights=np.arange(20) % 5 + 1)
    t0 = time.perf_counter()
    for name, params in (("bpr", {"iterations": 1}), ("als", {"iterations": 1}), ("biasedmf", {"epochs": 1}),
                         ("itemknn", {})):
        create(name, params).fit(tiny)
    return time.perf_counter() - t0


def timed_fit(make, train: Interactions, repeats: int = 3) -> tuple[BaseRecommender, float]:
    """Best of ``repeats`` fits of fresh models (the least disturbed by the other core's load)."""
    best, model = float("inf"), None
    for _ in range(repeats):
        model = make()
        t0 = time.perf_counter()
        model.fit(train)
        best = min(best, getattr(model, "peer_fit_seconds", None) or time.perf_counter() - t0)
    return model, best


def peak_mb(make, train: Interactions) -> float:
    """The fit's peak rise of the resident set (numba's and BLAS's allocations included, which tracemalloc
    does not see: it read 1 MB for BPR), measured as the experiment reports measure it."""
    with PeakMemory() as peak:
        make().fit(train)
    return peak.mb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--dataset", default="movielens-100k")
    args = ap.parse_args()
    console = Console(width=160)

    jit_s = warm_up()
    data = load_dataset(args.dataset)
    runs = [("itemknn", "implicit", ""), ("ease", "cornac", ""), ("ease", "cornac", "posB"),
            ("bpr", "implicit", ""), ("als", "implicit", "")]
    rows: dict[tuple[str, str], dict[str, list[float]]] = {}
    cfg = EvaluationConfig(ks=[10, 20], metrics=["ndcg", "recall", "precision"])
    for seed in args.seeds:
        train, test = random_holdout(data.interactions, 0.2, seed)
        train_pos, test_pos = to_implicit(train, 4), to_implicit(test, 4)
        _ = train_pos.matrix, train_pos.binary  # shared CSR construction, outside the timings
        exclude = train.binary
        for algo, lib, variant in runs:
            candidates = []
            if not variant:
                candidates.append(("mosaicrec", lambda a=algo, s=seed: create(a, {**PARAMS[a], **(
                    {"seed": s} if a in ("bpr", "als") else {})})))
            candidates.append((f"{lib}{'+' + variant if variant else ''}",
                               lambda a=algo, lb=lib, s=seed, v=variant: Peer(a, lb, s, v)))
            for impl, make in candidates:
                model, fit_s = timed_fit(make, train_pos)
                res = evaluate_ranking(model, test_pos, exclude=exclude, config=cfg)
                rec = rows.setdefault((algo, impl), {"fit_seconds": []})
                rec["fit_seconds"].append(fit_s)
                for k, v in res.metrics.items():
                    rec.setdefault(k, []).append(v)
                if seed == args.seeds[0]:
                    rec["peak_rss_mb"] = [peak_mb(make, train_pos)]
                console.log(f"seed {seed} {algo:8s} {impl:14s} ndcg@10={res.metrics['ndcg@10']:.4f} "
                            f"fit={fit_s:.3f}s")

    summary = []
    for (algo, impl), rec in rows.items():
        entry = {"algorithm": algo, "implementation": impl,
                 **{k: {"mean": float(np.mean(v)), "std": float(np.std(v))} for k, v in rec.items()}}
        summary.append(entry)
    for entry in summary:
        if entry["implementation"] != "mosaicrec":
            continue
        peer = next(e for e in summary if e["algorithm"] == entry["algorithm"]
                    and e["implementation"] not in ("mosaicrec",) and "+" not in e["implementation"])
        entry["peer"] = peer["implementation"]
        for key in ("ndcg@10", "recall@10", "fit_seconds"):
            entry[f"ratio_{key}"] = entry[key]["mean"] / max(peer[key]["mean"], 1e-12)

    meta = {"dataset": args.dataset, "split": "random 80/20 per user, ratings ≥ 4 positive",
            "seeds": args.seeds, "params": PARAMS, "jit_compile_seconds": jit_s,
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                        "processor": platform.machine()},
            "versions": {p: version(p) for p in ("implicit", "cornac", "numpy", "scipy", "numba")}}
    RESULTS.mkdir(parents=True, exist_ok=True)

    table = Table(title=f"CF vs peers on {args.dataset} ({len(args.seeds)} seeds, mean ± std)")
    heads = ["algorithm", "implementation", "NDCG@10", "Recall@10", "fit s", "peak MB",
             "NDCG ratio", "Recall ratio", "fit-time ratio"]
    for h in heads:
        table.add_column(h, justify="left" if h in ("algorithm", "implementation") else "right")
    md = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for e in summary:
        cells = [e["algorithm"], e["implementation"],
                 f"{e['ndcg@10']['mean']:.4f} ± {e['ndcg@10']['std']:.4f}",
                 f"{e['recall@10']['mean']:.4f} ± {e['recall@10']['std']:.4f}",
                 f"{e['fit_seconds']['mean']:.3f}", f"{e['peak_rss_mb']['mean']:.1f}",
                 f"{e['ratio_ndcg@10']:.3f}" if "peer" in e else "",
                 f"{e['ratio_recall@10']:.3f}" if "peer" in e else "",
                 f"{e['ratio_fit_seconds']:.2f}" if "peer" in e else ""]
        table.add_row(*cells)
        md.append("| " + " | ".join(cells) + " |")
    console.print(table)
    md += ["", f"Ratios are ours ÷ peer (accuracy: > 1 is better; fit time: < 1 is faster). "
               f"Our one-off numba compile: {jit_s:.1f}s (cached on disk afterwards). "
               f"Versions: {meta['versions']}."]
    write_result(RESULTS, "cf_peers", {"meta": meta, "rows": summary}, "\n".join(md) + "\n")
    console.print(f"wrote {RESULTS / 'cf_peers.json'} and {RESULTS / 'cf_peers.md'}")


if __name__ == "__main__":
    main()
