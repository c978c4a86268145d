"""Benchmark: growth with the log, one process against Ray workers on this machine (issue 17).

The log is generated (:func:`mosaicrec.data.synthetic.synthetic_log`: power-law popularity, topical
tastes, log-normal activity) at 1M, 10M and 50M events, with users = events / 50, items = events / 500
(so 50M events are 1M users and 100k items) and a topic per 500 items (at least 10). Repeated (user, item)
events are summed into one matrix entry, so the matrix holds fewer entries than the log has events. A shared sample of 10,000 users has 20% of its events held out.
For each size and mode (one process on one thread, the unit of parallel efficiency; one process on every
core; a local Ray cluster of 2 and of 4 workers), in a fresh process so that peak memory is its own:

* **fit**: ALS, 32 factors, 5 iterations (one process: the numba kernel on every core; Ray: row-sharded
  solves, :mod:`mosaicrec.models.distributed`);
* **eval**: Recall@10 and NDCG@10 of the sample by full ranking (Ray: shards of the users on the workers);
* **export**: the top 10 of the first 200,000 users (every user up to 10M events; a fifth of them at 50M,
  to keep the run under an hour) to Parquet (Ray: Ray Data ``map_batches`` and ``write_parquet``).

Peak memory is the largest sum of PSS (proportional set size: shared pages, such as Ray's object store,
counted once) over the process and its children, sampled every second. The Ray cluster's start is timed
apart. The peer of this benchmark is the one-process run in the same table; ratios are one process / Ray.

Writes benchmarks/results/ray_scale.json and .md.
Usage: python benchmarks/ray_scale.py [--sizes 1000000 10000000 50000000] [--modes -1 0 2 4] [--iterations 5]
       [--export-users 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from mosaicrec.evaluation.provenance import write_result

RESULTS = Path(__file__).parent / "results"
SAMPLE = 10_000


class PeakMemory:
    """Largest sum of PSS over this process and its children, sampled every ``every`` seconds."""

    def __init__(self, every: float = 1.0) -> None:
        import psutil

        self.me, self.every, self.peak, self.done = psutil.Process(), every, 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _sample(self) -> int:
        total = 0
        for p in [self.me, *self.me.children(recursive=True)]:
            try:
                total += p.memory_full_info().pss
            except Exception:  # noqa: BLE001  a child that just ended
                pass
        return total

    def _run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, self._sample())
            self.done.wait(self.every)

    def stop(self) -> float:
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, self._sample())
        return self.peak / 2**20


def holdout(x, seed: int = 0):
    """A shared sample of users with 20% of their events held out; the rest is training."""
    from mosaicrec.data.schema import Interactions

    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(x.n_users, min(SAMPLE, x.n_users), replace=False))
    is_test = np.isin(x.users, sample) & (rng.random(x.n_events) < 0.2)

    def part(mask):
        return Interactions(x.user_ids, x.item_ids, x.users[mask], x.items[mask], x.weights[mask],
                            x.timestamps[mask])
    return part(~is_test), part(is_test), sample


def one_run(events: int, workers: int, iterations: int, export_users: int) -> dict:
    """One (size, mode) in this process: generate, fit, evaluate, export; seconds and peak memory."""
    from mosaicrec.data.synthetic import synthetic_log
    from mosaicrec.evaluation.protocol import EvaluationConfig, evaluate_ranking
    from mosaicrec.models import create
    from mosaicrec.ranking.export import Listing, export_lists

    users, items = events // 50, events // 500
    t = time.perf_counter()
    x, _ = synthetic_log(users, items, events, topics=max(10, items // 500), seed=0)
    train, test, sample = holdout(x)
    X = train.matrix  # built once, outside the timings (both modes read the same CSR)
    gen_s = time.perf_counter() - t
    del x
    mem = PeakMemory()
    row = {"events": events, "users": users, "items": items, "train_nnz": int(X.nnz), "workers": workers,
           "generate_s": round(gen_s, 1)}
    # workers -1: one process on one thread, the unit that parallel efficiency is measured against
    one_thread = workers < 0
    workers = max(workers, 0)
    ray = None
    if workers:
        import ray as ray_module
        ray = ray_module
        t = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        row["ray_start_s"] = round(time.perf_counter() - t, 1)
    params = {"factors": 32, "iterations": iterations, "seed": 0, "workers": workers,
              "num_threads": 1 if one_thread else 0}
    t = time.perf_counter()
    model = create("als", params).fit(train)
    row["fit_s"] = round(time.perf_counter() - t, 1)
    row["s_per_iteration"] = round(row["fit_s"] / iterations, 2)
    cfg = EvaluationConfig(ks=[10], metrics=["recall", "ndcg"], workers=workers,
                           batch_size=max(64, min(2048, 20_000_000 // items)))
    from threadpoolctl import threadpool_limits

    t = time.perf_counter()
    with threadpool_limits(1 if one_thread else None):
        result = evaluate_ranking(model, test, exclude=train.binary, config=cfg,
                                  users=sample[np.diff(test.binary.indptr)[sample] > 0])
    row["eval_s"] = round(time.perf_counter() - t, 1)
    row["recall@10"], row["ndcg@10"] = round(result.metrics["recall@10"], 4), round(result.metrics["ndcg@10"], 4)
    row["fingerprint"] = float(np.round(np.abs(model.V_).sum(), 2))  # the same model in every mode?
    with tempfile.TemporaryDirectory(dir=os.environ.get("MOSAICREC_BENCH_TMP")) as tmp:
        t = time.perf_counter()
        with threadpool_limits(1 if one_thread else None):
            summary = export_lists(Listing.of_model(model), Path(tmp) / "top", k=10, workers=workers,
                                   users=[str(u) for u in model.user_ids[:min(users, export_users)]],
                                   batch_size=max(64, min(2048, 20_000_000 // items)))
        row["export_s"] = round(time.perf_counter() - t, 1)
        row["export_users"] = summary.users
        row["export_rows"], row["export_parts"] = summary.rows, summary.files
    row["peak_mb"] = round(mem.stop())
    if ray is not None:
        ray.shutdown()
    return row


def table(rows: list[dict]) -> str:
    base = {r["events"]: r for r in rows if r["workers"] == 0}
    unit = {r["events"]: r for r in rows if r["workers"] == -1}
    out = ["| events (users × items; matrix entries) | mode | fit s (s/iter) | eval s | export s (users) | "
           "total s | × one process | × one thread | peak MB | Recall@10 | NDCG@10 |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def total(r):
        return r["fit_s"] + r["eval_s"] + r["export_s"]
    for r in rows:
        b, u = base.get(r["events"]), unit.get(r["events"])
        mode = {-1: "one process, 1 thread", 0: "one process, all cores"}.get(
            r["workers"], f"Ray, {r['workers']} workers (+{r.get('ray_start_s')} s start)")
        out.append(f"| {r['events']:,} ({r['users']:,} × {r['items']:,}; {r['train_nnz']:,}) | {mode} | "
                   f"{r['fit_s']} ({r['s_per_iteration']}) | {r['eval_s']} | {r['export_s']} "
                   f"({r['export_users']:,}) | {total(r):.1f} | "
                   f"{'' if b is None else f'{total(b) / total(r):.2f}'} | "
                   f"{'' if u is None else f'{total(u) / total(r):.2f}'} | {r['peak_mb']:,} | "
                   f"{r['recall@10']:.4f} | {r['ndcg@10']:.4f} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000, 50_000_000])
    ap.add_argument("--modes", type=int, nargs="+", default=[-1, 0, 2, 4],
                    help="Ray workers; 0: one process on every core; -1: one process on one thread")
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--export-users", type=int, default=200_000, help="export the first N users' lists")
    ap.add_argument("--one", type=int, nargs=2, metavar=("EVENTS", "WORKERS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print("RESULT " + json.dumps(one_run(args.one[0], args.one[1], args.iterations, args.export_users)),
              flush=True)
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    # rows of other (size, mode) pairs from an earlier run are kept: a re-run of some modes updates them
    old = json.loads((RESULTS / "ray_scale.json").read_text()) if (RESULTS / "ray_scale.json").exists() else {}
    old = old.get("rows", []) if isinstance(old, dict) else old
    rows = [r for r in old if not (r["events"] in args.sizes and r["workers"] in args.modes)]
    for events in args.sizes:
        for workers in args.modes:
            proc = subprocess.run([sys.executable, __file__, "--one", str(events), str(workers), "--iterations",
                                   str(args.iterations), "--export-users", str(args.export_users)],
                                  capture_output=True, text=True)
            found = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not found:
                print(f"{events:,} events, {workers} workers failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
                continue
            rows.append(json.loads(found[0][7:]))
            print(json.dumps(rows[-1]), flush=True)
            rows.sort(key=lambda r: (r["events"], r["workers"]))
            (RESULTS / "ray_scale.json").write_text(json.dumps({"rows": rows}, indent=2))  # kept as it goes
    md = table(rows)
    write_result(RESULTS, "ray_scale", {"rows": rows}, md + "\n")
    print(md)


if __name__ == "__main__":
    main()
