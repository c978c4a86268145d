"""Benchmark: the lean service (issue 32): bounded cost, memory, start-up, CPU per request against the floor.

Five measurements, each against real ``mosaicrec serve`` processes on loopback:

* **burst** — ML-100K (EASE, content from the default encoders): 60 worst-case lists
  (``k=1000&diversity=1``) sent at once by one read key, while ``/health`` is asked every 20 ms. Reported:
  ``/health`` p50/p99 during the burst, the slowest worst-case answer, and how many were served (200) or
  refused (4xx, with ``Retry-After``).
* **memory** — resident memory (RSS) of the server after start and after the background encoding, with the
  default encoders and with ``--no-content``, after a warm-up of 2,000 mixed requests (lists, similar
  items, diverse lists, events) and again after 10,000 more.
* **start** — a 100,000-item ALS model (generated as in ``benchmarks/serving.py``): seconds from launch to
  ``/ready``, the first start (which saves the index beside the model) and the second (which maps it).
* **floor** — server CPU per request (the process's user + system time over 2,000 sequential requests on
  one keep-alive connection): ``/health`` (the same stack with no work: the floor) against top-10
  recommendations on the 100k catalog (ANN). The ratio is the goal's measure (≤ 2).
* **replicas** — the same 100k catalog served by ``--replicas 2`` on this machine, behind Ray Serve's
  proxy and behind none (``--ingress reuseport``): whether
  the two replicas give identical lists (50 users), how long a like posted to one takes to change the list
  the other serves (median and max of 20), the open-loop p99 at 500 req/s, and CPU per request summed over
  every process of the replicated path (proxy, replicas, writer, controller), with the proxy's share; one
  process's p99 and CPU per request at the same rate beside them (the baseline).

The baseline is the same measurement on the same machine; run the script at two commits to compare.
Writes benchmarks/results/service_lean.json (+ .md).

Usage: python benchmarks/service_lean.py [--items 100000] [--skip burst,memory,start,floor,replicas]
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
from serving import Connection, build, load  # noqa: E402  (the 100k catalog, the lean client, the load)

from mosaicrec.evaluation.provenance import write_result  # noqa: E402

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
        conn = HeaderConnection(url)  # connected before the burst: the client's own set-up is not timed
        go.wait()
        t = time.perf_counter()
        status, _ = conn.request("GET", f"/users/{user}/recommendations?k=1000&diversity=1")
        with lock:
            results.append((status, time.perf_counter() - t, b"retry-after" in conn.header.lower()))
        conn.close()

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


class HeaderConnection(Connection):
    """The lean client, keeping the last response's header block."""

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        self.header = b""
        head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\nX-API-Key: {KEY}\r\n"
        self.sock.sendall(head.encode() + b"\r\n" + (body or b""))
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv()
        self.header, _, rest = self.buf.partition(b"\r\n\r\n")
        length = next((int(line.partition(b":")[2]) for line in self.header.split(b"\r\n")[1:]
                       if line.partition(b":")[0].strip().lower() == b"content-length"), 0)
        while len(rest) < length:
            rest += self._recv()
        self.buf = rest[length:]
        return int(self.header[9:12]), rest[:length]


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


def _tree_cpu(procs: list[psutil.Process]) -> dict[int, float]:
    out = {}
    for p in procs:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except psutil.Error:
            pass
    return out


def _ray_procs() -> list[psutil.Process]:
    """This machine's Ray processes (the replicated path: raylet, GCS, proxy, controller, actors)."""
    found = []
    for p in psutil.process_iter(["cmdline", "name"]):
        line = " ".join(p.info["cmdline"] or [])
        if "ray::" in line or "raylet" in line or "gcs_server" in line or "ray/_private" in line:
            found.append(p)
    return found


def _name(p: psutil.Process) -> str:
    try:
        line = " ".join(p.cmdline())
    except psutil.Error:
        return "?"
    for key in ("ProxyActor", "ServeController", "Writer", "ServeReplica", "PortReplica"):
        if key in line:
            return key
    return "ray-other"


def cpu_under_load(url: str, procs: list[psutil.Process], rate: float, n: int, users: int) -> dict:
    """Open-loop top-10 lists at ``rate``; p99 and the CPU each process group spent per request."""
    before = _tree_cpu(procs)
    res = load(url, lambda rng: ("GET", f"/users/u{int(rng.integers(users))}/recommendations?k=10", None),
               n, 8, n / rate + 30, rate=rate)
    after = _tree_cpu(procs)
    groups: dict[str, float] = {}
    for p in procs:
        if p.pid in before and p.pid in after:
            groups[_name(p)] = groups.get(_name(p), 0.0) + (after[p.pid] - before[p.pid]) / res["requests"] * 1e3
    return {"p99_ms": res["p99_ms"], "req_s": res["req_s"], "errors": res["errors"],
            "cpu_ms_per_request": round(sum(groups.values()), 3),
            **{f"cpu_ms_{k}": round(v, 3) for k, v in sorted(groups.items())}}


def replicated(tmp: Path, big: Path, users: int, ingress: str) -> dict:
    """``serve --replicas 2 --ingress INGRESS`` on the 100k catalog (see the module docstring)."""
    home = tmp / f"rayhome-{ingress}"
    home.mkdir()
    port = _port()
    env = {**os.environ, "HOME": str(home), "RAY_TMPDIR": str(home)}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "mosaicrec.cli", "serve", "--model", str(big / "model"), "--store",
                             str(big / "store.duckdb"), "--content", str(big / "content.npz"), "--retrieval", "ann",
                             "--api-key-file", str(tmp / "keys.txt"), "--port", str(port), "--rate-limit", "1000000",
                             "--replicas", "2", "--ingress", ingress], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    served: set[str] = set()
    while len(served) < 2:
        if time.perf_counter() - t0 > 600 or proc.poll() is not None:
            raise SystemExit("replicas did not start")
        try:
            r = httpx.get(f"{url}/status", headers={"X-API-Key": KEY, "Connection": "close"}, timeout=5)
            if r.status_code == 200:
                served.add(r.headers["x-served-by"])
        except httpx.TransportError:
            time.sleep(0.5)
    out: dict = {"ready_s": time.perf_counter() - t0}
    # a connection per request: with reuseport the kernel spreads connections, not requests
    client = httpx.Client(base_url=url, headers={"X-API-Key": KEY, "Connection": "close"}, timeout=30)

    def both(path: str) -> dict[str, list]:
        seen: dict[str, list] = {}
        while len(seen) < 2:
            r = client.get(path)
            seen.setdefault(r.headers["x-served-by"], [(i["item_id"], i["score"]) for i in r.json()["items"]])
        return seen

    out["identical_lists"] = all(len({tuple(v) for v in both(f"/users/u{u}/recommendations?k=10").values()}) == 1
                                 for u in range(0, users, users // 50))
    delays = []
    for n in range(20):
        user = f"newcomer-{n}"
        r = client.post("/events", json={"events": [{"user_id": user, "item_id": f"i{n * 7}", "weight": 1.0}]})
        t = time.perf_counter()
        writer = r.headers["x-served-by"]
        while True:
            r = client.get(f"/users/{user}/recommendations?k=5")
            if r.headers["x-served-by"] != writer and not r.json()["cold_start"]:
                delays.append((time.perf_counter() - t) * 1e3)
                break
    out["write_visible_ms_median"] = float(np.median(delays))
    out["write_visible_ms_max"] = float(max(delays))
    under = cpu_under_load(url, _ray_procs(), 500, 10_000, users)
    under["cpu_ms_replicas"] = under.pop("cpu_ms_ServeReplica", 0.0) + under.pop("cpu_ms_PortReplica", 0.0)
    out |= {f"replicated_{k}": v for k, v in under.items()}
    client.close()
    stop(proc)
    return out


#: (part, key, what it is, the goal): the rows of the table, in order
ROWS = [
    ("burst", "health_p99_ms", "`/health` p99 while 60 worst-case lists arrive at once (ms)", "< 50"),
    ("burst", "heavy_max_s", "slowest worst-case list, answered or refused (s)", "≤ 2"),
    ("burst", "heavy_served", "worst-case lists served (of 60)", ""),
    ("burst", "refused_with_retry_after", "worst-case lists refused with 429 + Retry-After", "the rest"),
    ("memory", "content_ready_mb", "RSS, ML-100K EASE, default encoders, after the background encoding (MB)", "≤ 600"),
    ("memory", "content_warm_mb", "the same after a warm-up of 2,000 mixed requests (MB)", ""),
    ("memory", "content_after_10k_mb", "the same after 10,000 more (MB)", "no growth"),
    ("memory", "no_content_start_mb", "RSS, ML-100K EASE, `--no-content` (MB)", "≤ 400"),
    ("memory", "no_content_warm_mb", "the same after a warm-up of 2,000 mixed requests (MB)", ""),
    ("memory", "no_content_after_10k_mb", "the same after 10,000 more (MB)", "no growth"),
    ("start", "first_ready_s", "100k-item ALS, first start: builds and saves the indexes (s)", ""),
    ("start", "second_ready_s", "100k-item ALS, next start: maps them (s)", "≤ 5"),
    ("start", "rss_mb", "its RSS (MB)", ""),
    ("floor", "health_cpu_ms", "server CPU per `/health` (the floor, ms)", ""),
    ("floor", "recommend_cpu_ms", "server CPU per top-10 list, 100k items, ANN (ms)", ""),
    ("floor", "ratio", "list / floor", "≤ 2"),
    ("one_process", "p99_ms", "one process: p99 at 500 req/s (ms)", "≤ 10"),
    ("one_process", "cpu_ms_per_request", "one process: CPU per request at 500 req/s (ms)", ""),
    *[(f"replicas_{ing}", key, f"{label}: {what}", goal) for ing, label in (
        ("serve", "2 replicas, Ray Serve's proxy"), ("reuseport", "2 replicas, one port (SO_REUSEPORT)"))
      for key, what, goal in (
        ("ready_s", "ready (s)", ""),
        ("identical_lists", "identical lists (50 users)", "yes"),
        ("write_visible_ms_median", "a like posted to one, seen by the other: median (ms)", "≤ 1000"),
        ("write_visible_ms_max", "the same, slowest of 20 (ms)", "≤ 1000"),
        ("replicated_p99_ms", "p99 at 500 req/s (ms)", "≤ 10"),
        ("replicated_cpu_ms_per_request", "CPU per request, every process (ms)", ""),
        ("replicated_cpu_ms_ProxyActor", "of which the proxy (ms)", ""),
        ("replicated_cpu_ms_replicas", "of which the replicas (ms)", ""),
        ("machine_req_s", "what one such machine serves, CPU-bound (req/s)", ""),
        ("hundred_machines_req_s", "what 100 such machines serve (req/s)", ""))],
]


def render(out: dict) -> str:
    lines = ["| measure | value | goal |", "|---|---|---|"]
    for part, key, what, goal in ROWS:
        if key in out.get(part, {}):
            v = out[part][key]
            shown = ("yes" if v else "no") if isinstance(v, bool) else f"{v:,.3g}" if isinstance(v, float) else f"{v:,}"
            lines.append(f"| {what} | {shown} | {goal} |")
    return "\n".join(lines) + "\n"


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
                mixed(url, 2_000, content=False)  # warm-up: the allocator's arenas, the fold-in cache
                mem["no_content_warm_mb"] = rss_mb(proc)
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
                mixed(url, 2_000)
                mem["content_warm_mb"] = rss_mb(proc)
                mixed(url, 10_000)
                mem["content_after_10k_mb"] = rss_mb(proc)
            stop(proc)
        if not {"start", "floor", "replicas"} <= skip:
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
            if "replicas" not in skip:
                one = cpu_under_load(url, [psutil.Process(proc.pid)], 500, 10_000, args.items // 5)
                out["one_process"] = {"p99_ms": one["p99_ms"], "cpu_ms_per_request": one["cpu_ms_per_request"]}
            stop(proc)
            out["start"] = start
            if "replicas" not in skip:
                for ingress in ("serve", "reuseport"):
                    rep = out[f"replicas_{ingress}"] = replicated(tmp, big, args.items // 5, ingress)
                    rep["machine_req_s"] = (os.cpu_count() or 1) * 1e3 / rep["replicated_cpu_ms_per_request"]
                    rep["hundred_machines_req_s"] = 100 * rep["machine_req_s"]
    table = render(out)
    print(table)
    write_result(RESULTS, "service_lean", {"results": out, "items": args.items}, table)


if __name__ == "__main__":
    main()
