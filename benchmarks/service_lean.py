"""Benchmark: the lean service (issue 32): bounded cost, memory, start-up, CPU per request against the floor.

Four measurements, each against a real ``mosaicrec serve`` process on loopback:

* **burst** — ML-100K (EASE, content from the default encoders): 60 worst-case lists
  (``k=1000&diversity=1``) sent at once by one read key, while ``/health`` is asked every 20 ms. Reported:
  ``/health`` p50/p99 during the burst, the slowest worst-case answer, and how many were served (200) or
  refused (4xx, with ``Retry-After``).
* **memory** — resident memory (RSS) of the server after start and after the background encoding, with the
  default encoders and with ``--no-content``, and again after 10,000 mixed requests (lists, similar
  items, search, events).
* **start** — a 100,000-item ALS model (generated as in ``benchmarks/serving.py``): seconds from launch to
  ``/ready``, the first start (which saves the index beside the model) and the second (which maps it).
* **floor** — server CPU per request (the process's user + system time over 2,000 sequential requests on
  one keep-alive connection): ``/health`` (the same stack with no work: the floor) against top-10
  recommendations on the 100k catalog (ANN). The ratio is the goal's measure (≤ 2).

The baseline is the same measurement on the same machine; run the script at two commits to compare.
Writes benchmarks/results/service_lean.json (+ .md).

Usage: python benchmarks/service_lean.py [--items 100000] [--skip burst,memory,start,floor]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).parent))
from serving import Connection, build

from mosaicrec.evaluation.provenance import write_result

RESULTS = Path(__file__).parent / "results"
KEY = "bench-key"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(args: list[str], tmp: Path) -> tuple[subprocess.Popen, str, float]:
    """A server process; returns it, its URL and the seconds until ``/ready`` answered 200."""
    port = _port()
    (tmp / "keys.txt").write_text(f"{KEY}:write\n")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "mosaicrec.cli", "serve", *args, "--api-key-file",
                             str(tmp / "keys.txt"), "--port", str(port), "--rate-limit", "1000000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    while time.perf_counter() - t0 < 600:
        try:
            if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                return proc, url, time.perf_counter() - t0
        except httpx.TransportError:
            if proc.poll() is not None:
                raise SystemExit(f"server exited with {proc.returncode}: {' '.join(args)}")
            time.sleep(0.1)
    raise SystemExit("server did not become ready in 10 minutes")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def rss_mb(proc: subprocess.Popen) -> float:
    p = psutil.Process(proc.pid)
    return sum(c.memory_info().rss for c in [p, *p.children(recursive=True)]) / 1e6


def wait_content(url: str, limit: float = 900) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        status = httpx.get(f"{url}/status", headers={"X-API-Key": KEY}, timeout=10).json()
        if status.get("content_status") != "encoding":
            return time.perf_counter() - t0
        time.sleep(0.5)
    raise SystemExit("content not encoded in 15 minutes")


def ml100k(tmp: Path) -> tuple[Path, Path]:
    """ML-100K (the multimodal set when ../shared has it) in a store, EASE trained on it; the embedding
    cache of the default store is copied beside it, so a machine that encoded the catalog once does not
    again (the background encoding then reads the cache: the memory it costs is the same)."""
    store, model = tmp / "ml" / "store.duckdb", tmp / "ml" / "ease"
    store.parent.mkdir(parents=True)
    cache = Path(os.environ.get("MOSAICREC_HOME", ".mosaicrec")) / "embeddings.duckdb"
    if cache.is_file():
        shutil.copy(cache, store.parent / "embeddings.duckdb")
    from mosaicrec.data.datasets import DATASETS

    name = "ml100k-multimodal" if "ml100k-multimodal" in DATASETS else "movielens-100k"
    for cmd in (["ingest", "--dataset", name, "--store", str(store)],
                ["train", "--model", "ease", "--store", str(store), "--out", str(model)]):
        subprocess.run([sys.executable, "-m", "mosaicrec.cli", *cmd], check=True, stdout=subprocess.DEVNULL)
    return store, model


def burst(url: str, n: int = 60) -> dict:
    """``n`` worst-case lists at once while /health is polled."""
    health: list[float] = []
    done = threading.Event()

    def poll() -> None:
        conn = Connection(url)
        while not done.is_set():
            t = time.perf_counter()
            conn.request("GET", "/health")
            health.append(time.perf_counter() - t)
            time.sleep(0.02)
        conn.close()

    results: list[tuple[int, float, bool]] = []
    lock = threading.Lock()
    go = threading.Barrier(n)

    def heavy(user: int) -> None:
        headers = {"X-API-Key": KEY}
        with httpx.Client(timeout=120) as client:
            go.wait()
            t = time.perf_counter()
            r = client.get(f"{url}/users/{user}/recommendations", params={"k": 1000, "diversity": 1},
                           headers=headers)
            with lock:
                results.append((r.status_code, time.perf_counter() - t, "retry-after" in r.headers))

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.3)
    threads = [threading.Thread(target=heavy, args=(1 + i % 900,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    poller.join()
    during = np.array(health[15:]) * 1e3 if len(health) > 20 else np.array(health) * 1e3
    codes = [c for c, _, _ in results]
    refused = [(c, r) for c, _, r in results if 400 <= c < 500]
    return {"health_p50_ms": float(np.percentile(during, 50)), "health_p99_ms": float(np.percentile(during, 99)),
            "health_max_ms": float(during.max()), "heavy_max_s": max(s for _, s, _ in results),
            "heavy_served": codes.count(200), "heavy_refused": len(refused),
            "refused_with_retry_after": sum(r for _, r in refused), "heavy_other": len(codes) - codes.count(200) - len(refused)}


def mixed(url: str, n: int, content: bool = True) -> None:
    conn = Connection(url)
    rng = np.random.default_rng(0)
    for i in range(n):
        user, item = int(rng.integers(1, 943)), int(rng.integers(1, 1682))
        kind = i % 10
        if kind < 6:
            status, _ = conn.request("GET", f"/users/{user}/recommendations?k=10")
        elif kind < 8 and content:
            status, _ = conn.request("GET", f"/items/{item}/similar?k=10")
        elif kind == 8 or kind < 8:
            body = f'{{"events":[{{"user_id":"{user}","item_id":"{item}","weight":5}}]}}'.encode()
            status, _ = conn.request("POST", "/events", body)
        else:
            status, _ = conn.request("GET", f"/users/{user}/recommendations?k=20&diversity=0.5")
        if status >= 500:
            raise SystemExit(f"mixed load: {status}")
    conn.close()


def cpu_per_request(proc: subprocess.Popen, url: str, path: str, n: int = 2000) -> float:
    conn = Connection(url)
    for _ in range(50):
        conn.request("GET", path)
    p = psutil.Process(proc.pid)
    before = p.cpu_times()
    for i in range(n):
        status, _ = conn.request("GET", path.replace("{u}", f"u{i % 20000}"))
        if status != 200:
            raise SystemExit(f"{path}: {status}")
    after = p.cpu_times()
    conn.close()
    return (after.user + after.system - before.user - before.system) / n * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--skip", default="")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    out: dict = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if not {"burst", "memory"} <= skip:
            store, model = ml100k(tmp)
            base = ["--model", str(model), "--store", str(store)]
            if "memory" not in skip:
                proc, url, ready = serve([*base, "--no-content"], tmp)
                mem = {"no_content_start_mb": rss_mb(proc)}
                mixed(url, 10_000, content=False)
                mem["no_content_after_10k_mb"] = rss_mb(proc)
                stop(proc)
                out["memory"] = mem
            proc, url, ready = serve(base, tmp)
            mem = out.setdefault("memory", {})
            mem["content_start_mb"] = rss_mb(proc)
            mem["encode_s"] = wait_content(url)
            time.sleep(2)
            mem["content_ready_mb"] = rss_mb(proc)
            if "burst" not in skip:
                out["burst"] = burst(url)
            if "memory" not in skip:
                mixed(url, 10_000)
                mem["content_after_10k_mb"] = rss_mb(proc)
            stop(proc)
        if not {"start", "floor"} <= skip:
            big = tmp / "big"
            big.mkdir()
            build(big, args.items, args.items // 5, 25)
            base = ["--model", str(big / "model"), "--store", str(big / "store.duckdb"), "--content",
                    str(big / "content.npz"), "--retrieval", "ann"]
            proc, url, first = serve(base, tmp)
            start = {"first_ready_s": first}
            if "floor" not in skip:
                floor = cpu_per_request(proc, url, "/health")
                rec = cpu_per_request(proc, url, "/users/{u}/recommendations?k=10")
                out["floor"] = {"health_cpu_ms": floor, "recommend_cpu_ms": rec, "ratio": rec / floor}
            stop(proc)
            proc, url, second = serve(base, tmp)
            start["second_ready_s"] = second
            start["rss_mb"] = rss_mb(proc)
            stop(proc)
            out["start"] = start
    rows = [(f"{part}.{k}", round(v, 3) if isinstance(v, float) else v) for part, d in out.items() for k, v in d.items()]
    table = "| measure | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows) + "\n"
    print(table)
    write_result(RESULTS, "service_lean", {"results": out, "items": args.items}, table)


if __name__ == "__main__":
    main()
