"""Benchmark: our ItemKNN, EASE, BPR and ALS against the same algorithms in established libraries, in one
process, on the same splits, scored by the same full-ranking evaluation; and every user's top 10.

Peers: implicit 0.7 (CosineRecommender, BayesianPersonalizedRanking, AlternatingLeastSquares and its batch
``recommend``) and Cornac (EASE, with posB=False so that it is the same closed form as ours; Cornac's default
posB=True clips negative weights and is reported as an extra row). Each algorithm gets identical
hyper-parameters on both sides, and the same objective:

* **ALS**: confidence ``c_ui = 1 + alpha * r_ui`` on both sides. implicit reads its matrix's values as the
  confidence itself (``c = alpha * value``, with ``c - 1`` entering the matrix), so it is given ``1 + r`` as the
  values with its ``alpha = 1``; handed the bare 0/1 matrix it would fit ``c = 1`` for every positive.
* **BPR**: implicit learns the item bias as an extra factor, so its ``factors = 63`` is our 64 plus our bias.

Three parts, each interleaving ours and the peer's runs in one process (best of ``--repeats``; JIT compile
excluded, our numba kernels are warmed once):

1. **fit** on MovieLens-100K (ratings ≥ 4, random 80/20 per seed) and a synthetic log of 1M events
   (``data.synthetic``), BPR and ALS with 1 and 2 threads (BLAS held to one thread inside both fits): time
   and NDCG@10 with their ratios; ItemKNN and EASE on MovieLens-100K.
2. **ranking**: the top 10 of every user with their training items left out, on the same ALS factors: ours
   by the export's batch path (:func:`mosaicrec.ranking.batch.batch_lists`, the serving pipeline's rules as
   sparse masks) against implicit's batch ``recommend``, with 1 and 2 threads; and how many lists agree.
3. **export at scale** (``--large-events``, default 10M; 0 skips): the log of ``benchmarks/ray_scale.py``
   (users = events / 50, items = events / 500), ALS 32 factors 5 iterations, then ``export_lists`` of every
   user to Parquet in this process, against the fit and against implicit's ``recommend`` of the same users.

Writes benchmarks/results/cf_peers.json and cf_peers.md; prints the tables.
Usage: python benchmarks/cf_peers.py [--seeds 0 1 2] [--large-seeds 0 1] [--repeats 3] [--large-events 10000000]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
from rich.console import Console
from threadpoolctl import threadpool_limits

from mosaicrec.data import load_dataset, random_holdout, to_implicit
from mosaicrec.data.schema import Interactions
from mosaicrec.data.synthetic import synthetic_catalog, synthetic_log
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
NDCG = EvaluationConfig(ks=[10], metrics=["ndcg"])


class Peer(BaseRecommender):
    """Adapter: fits a peer library's model and exposes its scores through our protocol, so both sides
    are evaluated by exactly the same code."""

    name = "peer"

    def __init__(self, algorithm: str, library: str, seed: int, variant: str = "") -> None:
        super().__init__()
        self.algorithm, self.library, self.seed, self.variant = algorithm, library, seed, variant

    def _fit(self, train: Interactions) -> None:
        X = train.matrix
        p = PARAMS[self.algorithm]
        if self.library == "implicit":  # ItemKNN (BPR and ALS: implicit_fit)
            from implicit.nearest_neighbours import CosineRecommender

            # implicit keeps each item as its own neighbour (similarity 1, filtered at recommend time):
            # K = neighbours + 1 gives the same number of real neighbours as ours.
            m = CosineRecommender(K=p["neighbors"] + 1)
            m.fit(X, show_progress=False)
            self._score = lambda users: np.asarray((X[users] @ m.similarity).toarray(), np.float32)
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


class Factors(BaseRecommender):
    """A peer's fitted factors behind our protocol, so both sides are scored by the same evaluation."""

    name = "factors"

    def __init__(self, U: np.ndarray, V: np.ndarray, train: Interactions) -> None:
        super().__init__()
        self.U, self.V = U, V
        self.fit_on = train

    def _fit(self, train: Interactions) -> None:
        pass

    def _scores(self, query) -> np.ndarray:
        return self.U[query.users] @ self.V.T


def implicit_fit(algo: str, train: Interactions, seed: int, threads: int, params: dict | None = None):
    """implicit's BPR or ALS on the same objective as ours (see the module); returns the fitted model."""
    from implicit.als import AlternatingLeastSquares
    from implicit.bpr import BayesianPersonalizedRanking

    p = params or PARAMS[algo]
    X = train.binary.astype(np.float32)
    if algo == "bpr":
        m = BayesianPersonalizedRanking(factors=p["factors"] - 1, learning_rate=p["learning_rate"],
                                        regularization=p["regularization"], iterations=p["iterations"],
                                        random_state=seed, num_threads=threads)
    else:
        X = X.copy()
        X.data = 1.0 + p["alpha"] * X.data  # implicit's confidence is the value: 1 + alpha r, as ours
        m = AlternatingLeastSquares(factors=p["factors"], regularization=p["regularization"], alpha=1.0,
                                    iterations=p["iterations"], random_state=seed, num_threads=threads)
    with threadpool_limits(1):
        m.fit(X, show_progress=False)
    return m


def interleaved(makers: dict, repeats: int) -> tuple[dict[str, float], dict]:
    """Best time of each maker over ``repeats`` rounds, the makers taking turns; the last results."""
    best, last = {k: float("inf") for k in makers}, {}
    for _ in range(repeats):
        for name, make in makers.items():
            t0 = time.perf_counter()
            last[name] = make()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best, last


def fit_part(name: str, splits: list, repeats: int, console: Console) -> list[dict]:
    """BPR and ALS, ours against implicit, with 1 and 2 threads: fit seconds and NDCG@10 over the splits."""
    rows = []
    for algo in ("bpr", "als"):
        for threads in (1, 2):
            rec = {"dataset": name, "algorithm": algo, "threads": threads, "ours_s": [], "peer_s": [],
                   "ours_ndcg": [], "peer_ndcg": []}
            for seed, train, test in splits:
                ours = {**PARAMS[algo], "seed": seed, "num_threads": threads}
                best, last = interleaved({
                    "ours": lambda: create(algo, ours).fit(train),
                    "peer": lambda: implicit_fit(algo, train, seed, threads)}, repeats)
                peer = last["peer"]
                fitted = Factors(np.asarray(peer.user_factors), np.asarray(peer.item_factors), train).fit(train)
                for side, model in (("ours", last["ours"]), ("peer", fitted)):
                    rec[f"{side}_s"].append(best[side])
                    ndcg = evaluate_ranking(model, test, exclude=train.binary, config=NDCG).metrics["ndcg@10"]
                    rec[f"{side}_ndcg"].append(ndcg)
                console.log(f"{name} {algo} {threads} thread(s) seed {seed}: ours {best['ours']:.3f}s "
                            f"ndcg {rec['ours_ndcg'][-1]:.4f}, implicit {best['peer']:.3f}s {rec['peer_ndcg'][-1]:.4f}")
            rows.append(rec)
    return rows


def ranking_part(name: str, train: Interactions, seed: int, repeats: int, console: Console) -> list[dict]:
    """Every user's top 10 (training items left out) on our ALS factors: our batch path against implicit's
    batch ``recommend`` of the same factors."""
    from implicit.als import AlternatingLeastSquares

    from mosaicrec.ranking.batch import batch_lists
    from mosaicrec.ranking.export import ListBatch, Listing, _blas

    model = create("als", {**PARAMS["als"], "seed": seed}).fit(train)
    X = train.binary.astype(np.float32)
    peer = AlternatingLeastSquares(factors=PARAMS["als"]["factors"], iterations=1)
    with threadpool_limits(1):
        peer.fit(X, show_progress=False)
    peer.user_factors, peer.item_factors = model.U_.copy(), model.V_.copy()
    t0 = time.perf_counter()
    listed = ListBatch(Listing.of_model(model), 10)  # the export's snapshot and pipeline
    setup_s = time.perf_counter() - t0
    ids = [str(u) for u in model.user_ids]
    users = np.arange(len(ids))
    rows = []
    for threads in (1, 2):
        peer.num_threads = threads

        def ours():
            with _blas().limit(limits=1, user_api="blas"):
                return batch_lists(listed.pipeline, listed.snap, ids, 10, threads=threads)

        def theirs():
            with threadpool_limits(1):
                return peer.recommend(users, X, N=10, filter_already_liked_items=True)
        best, last = interleaved({"ours": ours, "peer": theirs}, repeats)
        same = float(np.mean((last["ours"].items == last["peer"][0]).all(axis=1)))
        rows.append({"dataset": name, "users": len(ids), "items": X.shape[1], "threads": threads,
                     "ours_s": best["ours"], "peer_s": best["peer"], "setup_s": setup_s, "same_lists": same})
        console.log(f"{name} top-10 of {len(ids)} users, {threads} thread(s): ours {best['ours']:.4f}s, implicit "
                    f"{best['peer']:.4f}s, identical lists {same:.4f}")
    return rows


def large_part(events: int, repeats: int, console: Console) -> dict:
    """ALS at ``events`` events as benchmarks/ray_scale.py builds it: fit, every user's export, and implicit's
    ``recommend`` of the same users on the same factors."""
    from implicit.als import AlternatingLeastSquares

    from mosaicrec.ranking.export import Listing, export_lists

    n_users, n_items = events // 50, events // 500
    x, _ = synthetic_log(n_users, n_items, events, topics=max(10, n_items // 500), seed=0)
    X = x.binary.astype(np.float32)
    params = {"factors": 32, "iterations": 5, "seed": 0}
    fit_s, last = interleaved({"fit": lambda: create("als", params).fit(x)}, repeats)
    model = last["fit"]
    peer = AlternatingLeastSquares(factors=32, iterations=1)
    with threadpool_limits(1):
        peer.fit(X[:100], show_progress=False)
    peer.user_factors, peer.item_factors = model.U_.copy(), model.V_.copy()
    users = np.arange(X.shape[0])
    exports, recommend = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(dir=os.environ.get("MOSAICREC_BENCH_TMP")) as tmp:
            t0 = time.perf_counter()
            summary = export_lists(Listing.of_model(model), Path(tmp) / "top", k=10)
            exports.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with threadpool_limits(1):
            for start in range(0, len(users), 20_000):  # implicit's own batches, as a caller would give them
                peer.recommend(users[start:start + 20_000], X[start:start + 20_000], N=10,
                               filter_already_liked_items=True)
        recommend.append(time.perf_counter() - t0)
    row = {"events": events, "users": n_users, "items": n_items, "matrix_entries": int(X.nnz),
           "fit_s": fit_s["fit"], "export_s": min(exports), "implicit_recommend_s": min(recommend),
           "rows": summary.rows}
    console.log(f"{events:,} events: fit {row['fit_s']:.1f}s, export {row['export_s']:.1f}s, implicit recommend "
                f"{row['implicit_recommend_s']:.1f}s")
    return row


def popular_negatives_kernel():
    """Our plain BPR epoch with implicit's negative draw instead of ours: a random *interaction*'s item (so in
    proportion to popularity), the sample skipped when the user has seen it. Built here, not in the
    package: it exists to test why our BPR ranks better at the same settings."""
    from numba import njit, prange

    from mosaicrec.models._kernels import _below, _seen, _stream_state, _xorshift, bpr_step

    @njit(parallel=True, fastmath=True)
    def epoch(ev_users, ev_items, indptr, indices, U, V, item_bias, lr, reg, n_streams, seed):
        n_ev = len(ev_users)
        per = (n_ev + n_streams - 1) // n_streams
        skipped = np.zeros(n_streams, dtype=np.int64)
        for s in prange(n_streams):
            state = _stream_state(seed, s)
            for _ in range(per):
                state = _xorshift(state)
                e = _below(state, n_ev)
                state = _xorshift(state)
                j = ev_items[_below(state, n_ev)]  # implicit's draw: an interaction's item
                if _seen(indptr, indices, ev_users[e], j):
                    skipped[s] += 1
                    continue
                bpr_step(U, V, item_bias, ev_users[e], ev_items[e], j, lr, reg)
        return int(skipped.sum()), 0.0

    return epoch


def sampling_part(name: str, splits: list, console: Console) -> dict:
    """NDCG@10 of our BPR with our negatives and with implicit's (everything else ours), over the splits."""
    from mosaicrec.models import _kernels

    ours_kernel, popular = _kernels.bpr_epoch_plain, popular_negatives_kernel()
    out = {"dataset": name, "uniform_unseen": [], "popularity": []}
    for seed, train, test in splits:
        for key, kernel in (("uniform_unseen", ours_kernel), ("popularity", popular)):
            _kernels.bpr_epoch_plain = kernel
            try:
                model = create("bpr", {**PARAMS["bpr"], "seed": seed}).fit(train)
            finally:
                _kernels.bpr_epoch_plain = ours_kernel
            out[key].append(evaluate_ranking(model, test, exclude=train.binary, config=NDCG).metrics["ndcg@10"])
        console.log(f"{name} seed {seed}: BPR NDCG@10 with our negatives {out['uniform_unseen'][-1]:.4f}, with "
                    f"implicit's {out['popularity'][-1]:.4f}")
    return out


def knn_ease_part(data, seeds: list[int], console: Console) -> list[dict]:
    """ItemKNN against implicit's and EASE against Cornac's on MovieLens-100K (fit time, accuracy, memory)."""
    rows: dict[tuple[str, str], dict[str, list[float]]] = {}
    cfg = EvaluationConfig(ks=[10], metrics=["ndcg", "recall"])
    for seed in seeds:
        train, test = random_holdout(data.interactions, 0.2, seed)
        train_pos, test_pos = to_implicit(train, 4), to_implicit(test, 4)
        _ = train_pos.matrix, train_pos.binary  # shared CSR construction, outside the timings
        for algo, lib, variant in (("itemknn", "implicit", ""), ("ease", "cornac", ""), ("ease", "cornac", "posB")):
            candidates = [] if variant else [("mosaicrec", lambda a=algo: create(a, PARAMS[a]))]
            candidates.append((f"{lib}{'+' + variant if variant else ''}",
                               lambda a=algo, lb=lib, s=seed, v=variant: Peer(a, lb, s, v)))
            for impl, make in candidates:
                model, fit_s = timed_fit(make, train_pos)
                res = evaluate_ranking(model, test_pos, exclude=train.binary, config=cfg)
                rec = rows.setdefault((algo, impl), {"fit_seconds": []})
                rec["fit_seconds"].append(fit_s)
                for k, v in res.metrics.items():
                    rec.setdefault(k, []).append(v)
                if seed == seeds[0]:
                    rec["peak_rss_mb"] = [peak_mb(make, train_pos)]
                console.log(f"seed {seed} {algo:8s} {impl:14s} ndcg@10={res.metrics['ndcg@10']:.4f} fit={fit_s:.3f}s")
    return [{"algorithm": a, "implementation": i, **{k: {"mean": float(np.mean(v)), "std": float(np.std(v))}
                                                     for k, v in rec.items()}} for (a, i), rec in rows.items()]


def pm(values: list[float], digits: int = 4) -> str:
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def tables(fits: list[dict], ranks: list[dict], large: dict | None, knn: list[dict], jit_s: float,
           versions: dict, sampling: list[dict]) -> str:
    md = ["**Fit**: BPR (64 factors, 100 epochs) and ALS (64 factors, 15 iterations, c = 1 + r), ours against "
          "implicit at the same threads; time is the best of the interleaved runs, NDCG@10 mean ± std over the "
          "seeds; ratios are ours ÷ implicit (time: < 1 is faster; NDCG: > 1 is better).", "",
          "| data | algorithm | threads | fit s ours | fit s implicit | time ratio | NDCG@10 ours | "
          "NDCG@10 implicit | NDCG ratio |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in fits:
        md.append(f"| {r['dataset']} | {r['algorithm']} | {r['threads']} | {np.mean(r['ours_s']):.3f} | "
                  f"{np.mean(r['peer_s']):.3f} | {np.mean(r['ours_s']) / np.mean(r['peer_s']):.2f} | "
                  f"{pm(r['ours_ndcg'])} | {pm(r['peer_ndcg'])} | "
                  f"{np.mean(r['ours_ndcg']) / np.mean(r['peer_ndcg']):.3f} |")
    md += ["", "**Why our BPR ranks better**: our BPR as it is, and with implicit's negative draw (a random "
           "interaction's item, so in proportion to popularity; a seen one skips the sample), all else the same.",
           "", "| data | NDCG@10, our negatives | NDCG@10, implicit's negatives | implicit's BPR |",
           "|---|---:|---:|---:|"]
    for r in sampling:
        theirs = next(f for f in fits if f["dataset"] == r["dataset"] and f["algorithm"] == "bpr")["peer_ndcg"]
        md.append(f"| {r['dataset']} | {pm(r['uniform_unseen'])} | {pm(r['popularity'])} | {pm(theirs)} |")
    md += ["", "**Every user's top 10** with their training items left out, on the same ALS factors: ours by the "
           "export's batch path (the pipeline's rules as sparse masks) against implicit's batch `recommend`.", "",
           "| data | users × items | threads | ours s | implicit s | time ratio | identical lists |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for r in ranks:
        md.append(f"| {r['dataset']} | {r['users']:,} × {r['items']:,} | {r['threads']} | {r['ours_s']:.4f} | "
                  f"{r['peer_s']:.4f} | {r['ours_s'] / r['peer_s']:.2f} | {r['same_lists']:.4f} |")
    if large:
        md += ["", f"**Export at scale**: {large['events']:,} events ({large['users']:,} users × {large['items']:,} "
               f"items, {large['matrix_entries']:,} matrix entries), ALS 32 factors 5 iterations, 2 threads.", "",
               "| fit s | export of every user s | implicit `recommend` of every user s | export ÷ fit | "
               "export ÷ implicit |", "|---:|---:|---:|---:|---:|",
               f"| {large['fit_s']:.1f} | {large['export_s']:.1f} | {large['implicit_recommend_s']:.1f} | "
               f"{large['export_s'] / large['fit_s']:.2f} | {large['export_s'] / large['implicit_recommend_s']:.2f} |"]
    md += ["", "**ItemKNN and EASE** on MovieLens-100K (implicit keeps each item as one of its own neighbours, so "
           "it runs with one more neighbour to have the same real ones).", "",
           "| algorithm | implementation | NDCG@10 | Recall@10 | fit s | peak MB |", "|---|---|---|---|---|---|"]
    for e in knn:
        md.append(f"| {e['algorithm']} | {e['implementation']} | {e['ndcg@10']['mean']:.4f} ± "
                  f"{e['ndcg@10']['std']:.4f} | {e['recall@10']['mean']:.4f} ± {e['recall@10']['std']:.4f} | "
                  f"{e['fit_seconds']['mean']:.3f} | {e['peak_rss_mb']['mean']:.1f} |")
    md += ["", f"Our one-off numba compile: {jit_s:.1f}s (cached on disk afterwards). Versions: {versions}."]
    return "\n".join(md) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--large-seeds", type=int, nargs="+", default=[0, 1], help="seeds of the 1M-event fits")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--large-events", type=int, default=10_000_000, help="0 skips the export at scale")
    args = ap.parse_args()
    console = Console(width=160)
    jit_s = warm_up()
    data = load_dataset("movielens-100k")
    ml = []
    for seed in args.seeds:
        train, test = random_holdout(data.interactions, 0.2, seed)
        ml.append((seed, to_implicit(train, 4), to_implicit(test, 4)))
    x1m, _ = synthetic_catalog(n_events=1_000_000, modalities={})
    big = [(seed, *random_holdout(x1m.interactions, 0.2, seed)) for seed in args.large_seeds]
    fits = fit_part("MovieLens-100K", ml, args.repeats, console)
    fits += fit_part("synthetic 1M", big, max(2, args.repeats - 1), console)
    ranks = ranking_part("MovieLens-100K", ml[0][1], ml[0][0], max(5, args.repeats), console)
    ranks += ranking_part("synthetic 1M", big[0][1], big[0][0], args.repeats, console)
    large = large_part(args.large_events, 2, console) if args.large_events else None
    sampling = [sampling_part("MovieLens-100K", ml, console), sampling_part("synthetic 1M", big, console)]
    knn = knn_ease_part(data, args.seeds, console)
    versions = {p: version(p) for p in ("implicit", "cornac", "numpy", "scipy", "numba")}
    meta = {"seeds": args.seeds, "large_seeds": args.large_seeds, "repeats": args.repeats, "params": PARAMS,
            "jit_compile_seconds": jit_s, "versions": versions,
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "processor": platform.machine()},
            "confidence": "c = 1 + alpha r on both sides (implicit given 1 + r as values, alpha 1)"}
    md = tables(fits, ranks, large, knn, jit_s, versions, sampling)
    console.print(md)
    write_result(RESULTS, "cf_peers", {"meta": meta, "fit": fits, "ranking": ranks, "large": large, "rows": knn,
                                         "sampling": sampling}, md)
    console.print(f"wrote {RESULTS / 'cf_peers.json'} and {RESULTS / 'cf_peers.md'}")


if __name__ == "__main__":
    main()
