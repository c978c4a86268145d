"""Benchmark: the HTTP service under a loopback load, over a catalog of 100,000 items.

Setup (generated, seeded): 100k items in 50 categories, 20k users with 25 events each from their two
favourite categories, an ALS model (64 factors) and 64-d item content, all in a real DuckDB store. The server
is ``mosaicrec serve`` in its own process (exact retrieval, then HNSW); the load comes from this process
over keep-alive connections in ``--threads`` threads, bounded by ``--requests`` per endpoint and
``--seconds``. Client and server share the machine's cores, as on a 2-core box they must.

Per endpoint: requests/s and p50/p95/p99 latency (client side, so it includes HTTP and JSON both ways).
``GET /health`` is the baseline: the same stack with no work, the ceiling any endpoint can reach; each
endpoint's ratio to it is reported. ANN recall@10 against exact top-10 is measured on 1,000 users.
Goal (issue 5): p99 < 10 ms for top-10 and ≥ 500 req/s for recommendations.

Writes benchmarks/results/serving.json and .md; prints a rich table.
Usage: python benchmarks/serving.py [--items 100000] [--requests 2000] [--threads 4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from mosaicrec.data.content import ItemContent
from mosaicrec.data.schema import Interactions
from mosaicrec.data.store import Store
from mosaicrec.models import create
from mosaicrec.ranking.ann import InnerProductIndex, recall_at_k

RESULTS = Path(__file__).parent / "results"
KEY = "bench-key"


def build(tmp: Path, n_items: int, n_users: int, per_user: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    cats = np.arange(n_items) % 50
    by_cat = [np.flatnonzero(cats == c) for c in range(50)]
    users, items = [], []
    for u in range(n_users):
        pool = np.concatenate([by_cat[c] for c in rng.choice(50, 2, replace=False)])
        users.append(np.full(per_user, u))
        items.append(rng.choice(pool, per_user, replace=False))
    users, items = np.concatenate(users), np.concatenate(items)
    ts = np.arange(len(users)) + 1_600_000_000
    item_ids = np.array([f"i{i}" for i in range(n_items)], dtype=object)
    user_ids = np.array([f"u{u}" for u in range(n_users)], dtype=object)
    catalog = pd.DataFrame({"item_id": item_ids, "title": [f"item {i}" for i in range(n_items)],
                            "texts": [{}] * n_items, "image": None, "audio": None,
                            "attributes": [{"cat": int(c)} for c in cats]})
    events = pd.DataFrame({"user_id": user_ids[users], "item_id": item_ids[items], "timestamp": ts,
                           "event_type": "like", "weight": 1.0, "context": "{}"})
    with Store(tmp / "store.duckdb") as st:
        st.ingest(items=catalog, events=events)
    x = Interactions.from_arrays(users, items, timestamps=ts, n_users=n_users, n_items=n_items)
    x = Interactions(user_ids, item_ids, x.users, x.items, x.weights, x.timestamps)
    model = create("als", {"factors": 64, "iterations": 10}).fit(x)
    model.save(tmp / "model")
    centres = rng.standard_normal((50, 64)).astype(np.float32)
    feats = centres[cats] + 0.5 * rng.standard_normal((n_items, 64)).astype(np.float32)
    ItemContent(item_ids, {"text": feats}, {"text": np.ones(n_items, bool)}).save(tmp / "content.npz")
    return model


def start(tmp: Path, retrieval: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "mosaicrec.cli", "serve", "--model", str(tmp / "model"),
                             "--store", str(tmp / "store.duckdb"), "--content", str(tmp / "content.npz"),
                             "--api-key", f"{KEY}:write", "--retrieval", retrieval, "--port", str(port),
                             "--rate-limit", "1000000"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return proc, url
        except httpx.TransportError:
            if proc.poll() is not None:
                raise SystemExit(f"server failed: {proc.stderr.read()}")
            time.sleep(0.25)
    raise SystemExit("server did not start in 5 minutes")


def load(url: str, make_request, n: int, threads: int, seconds: float) -> dict:
    """``n`` requests over ``threads`` keep-alive clients (or until ``seconds``); latencies in ms."""
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds
    counter = iter(range(n))

    def worker(tid: int) -> None:
        rng = np.random.default_rng(tid)
        with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=30) as client:
            for _ in range(3):  # warm the connection
                make_request(client, rng)
            mine = []
            while time.perf_counter() < deadline:
                with lock:
                    if next(counter, None) is None:
                        break
                t0 = time.perf_counter()
                r = make_request(client, rng)
                mine.append((time.perf_counter() - t0) * 1000)
                if r.status_code >= 400:
                    with lock:
                        errors[0] += 1
            with lock:
                lat.extend(mine)

    t0 = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - t0
    a = np.array(lat)
    return {"requests": len(a), "errors": errors[0], "req_s": round(len(a) / wall, 1),
            "p50_ms": round(float(np.percentile(a, 50)), 2), "p95_ms": round(float(np.percentile(a, 95)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--requests", type=int, default=2000, help="per endpoint")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=60.0, help="cap per endpoint")
    args = ap.parse_args()
    console = Console()
    n_items, n_users = args.items, args.users
    endpoints = {
        "health (baseline)": lambda c, rng: c.get("/health"),
        "recommendations k=10": lambda c, rng: c.get(f"/users/u{rng.integers(n_users)}/recommendations",
                                                     params={"k": 10}),
        "recommendations k=10, filter": lambda c, rng: c.get(f"/users/u{rng.integers(n_users)}/recommendations",
                                                             params={"k": 10, "filter": f"cat:{rng.integers(50)}"}),
        "similar k=10": lambda c, rng: c.get(f"/items/i{rng.integers(n_items)}/similar", params={"k": 10}),
        "events (1 per request)": lambda c, rng: c.post("/events", json={"events": [
            {"user_id": f"u{rng.integers(n_users)}", "item_id": f"i{rng.integers(n_items)}",
             "timestamp": int(rng.integers(1e9, 2e9)), "event_type": "view"}]}),
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with console.status(f"building {n_items} items, {n_users} users, ALS"):
            t0 = time.perf_counter()
            model = build(tmp, n_items, n_users, 25)
            build_s = time.perf_counter() - t0
        rng = np.random.default_rng(1)
        users = rng.choice(n_users, 1000, replace=False)
        exact = np.argsort(-(model.U_[users] @ model.V_.T), axis=1)[:, :10]
        t0 = time.perf_counter()
        index = InnerProductIndex(model.V_)
        index_s = time.perf_counter() - t0
        recall = recall_at_k(index.search(model.U_[users], 10)[0], exact)
        console.print(f"ANN recall@10 vs exact on 1,000 users: {recall:.3f} (index built in {index_s:.1f}s)")
        for retrieval in ("exact", "ann"):
            proc, url = start(tmp, retrieval)
            try:
                for name, fn in endpoints.items():
                    if retrieval == "ann" and name.startswith(("health", "similar", "events")):
                        continue  # the same code path in both servers
                    with console.status(f"{retrieval}: {name}"):
                        r = load(url, fn, args.requests, args.threads, args.seconds)
                    rows.append({"retrieval": retrieval, "endpoint": name, **r})
                    console.print(rows[-1])
            finally:
                proc.terminate()
                proc.wait(20)
    base = next(r["req_s"] for r in rows if r["endpoint"].startswith("health"))
    for r in rows:
        r["vs_health"] = round(r["req_s"] / base, 3)
    cols = ["retrieval", "endpoint", "requests", "errors", "req_s", "vs_health", "p50_ms", "p95_ms", "p99_ms"]
    table = Table(title=f"serving over {n_items:,} items ({args.threads} client threads, loopback, "
                        f"{os.cpu_count()} cores shared); ANN recall@10 = {recall:.3f}")
    for c in cols:
        table.add_column(c, justify="left" if c in ("retrieval", "endpoint") else "right")
    for r in rows:
        table.add_row(*[str(r[c]) for c in cols])
    console.print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"items": n_items, "users": n_users, "threads": args.threads, "requests": args.requests,
            "ann_recall_at_10": round(recall, 4), "index_build_s": round(index_s, 2), "setup_s": round(build_s, 1),
            "cpus": os.cpu_count(), "python": platform.python_version()}
    (RESULTS / "serving.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    md = ["| " + " | ".join(cols) + " |", "|---|---|" + "---:|" * (len(cols) - 2)]
    md += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    (RESULTS / "serving.md").write_text(f"# Serving over {n_items:,} items\n\nANN recall@10: {recall:.3f}\n\n"
                                        + "\n".join(md) + "\n")
    console.print(f"wrote {RESULTS / 'serving.json'} and .md")


if __name__ == "__main__":
    main()
