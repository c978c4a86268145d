"""``mosaicrec serve --replicas N``: the service as N replicas on Ray, behind Ray Serve's proxy or none.

The driver (this process) reads the model and the store, encodes what content is missing (in a child
process, before any replica starts), and puts the model, the content and the knowledge graph in Ray's
object store: every replica on a machine maps the same copy of their arrays (read-only, shared memory),
and the ANN indexes are mapped from the model folder's ``index/``. One :class:`~mosaicrec.serving.
replication.Writer` actor owns the DuckDB store and the change log; each replica reads and writes through it
and follows the log (:mod:`mosaicrec.serving.replication`). ``--ray-address`` joins an existing cluster (the
replicas then spread over its machines, which must see the model folder and the media root at the same
paths).

Two ingresses, the same replicas:

* ``serve`` (default): a Ray Serve deployment; Ray's HTTP proxy spreads requests over every replica of the
  cluster. Measured here, the proxy and Serve's request path cost several times the recommendation itself.
* ``reuseport``: each replica is a Ray actor running its own HTTP server, all bound to the same port with
  ``SO_REUSEPORT``, so the kernel spreads *connections* over the machine's replicas with no proxy at all
  (a keep-alive connection stays with its replica). Across machines, put any load balancer in front of
  each machine's port.

What differs from one process: each replica has its own rate-limit buckets and heavy lane (a key may spend
N times its rate over N replicas); retraining jobs are one process's state, so ``/admin/retrain`` is off (train
with ``mosaicrec train`` and ``POST /admin/reload``: every replica swaps); a bandit learns in one process
and is refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from mosaicrec.app.server import ServeOptions, _kg, encode_missing, explore_config, served_content, serving_keys
from mosaicrec.app.trained import encoder_params, load_trained, missing_content
from mosaicrec.data.content import ItemContent
from mosaicrec.data.store import default_store_path
from mosaicrec.errors import MosaicError
from mosaicrec.models.training import TrainingInfo
from mosaicrec.serving.auth import KeyKind

APP_NAME = "mosaicrec"
WRITER_NAME = "mosaicrec-writer"


@dataclass
class ReplicaSpec:
    """What every replica is built from (picklable: it travels to each replica)."""

    store_path: str
    keys: dict[str, KeyKind]
    model_root: str
    model_dir: str | None  # relative to the model root: what POST /admin/reload loads by default
    index_dir: str
    media_root: str
    media_read_roots: list[str] = field(default_factory=list)
    max_media_bytes: int = 25_000_000
    retrieval: str = "auto"
    rate_limit: float = 1000.0
    public_docs: bool = False
    explore: Any = None  # an ExploreConfig: stateless, so every replica draws its own lists the same way
    max_video_bytes: int = 200_000_000


class Replica:
    """One replica: a service over the shared store, following the change log, behind the HTTP app."""

    def __init__(self, spec: ReplicaSpec, shared: list[dict[str, Any]], writer) -> None:
        import ray

        from mosaicrec.serving.media import MediaPolicy
        from mosaicrec.serving.replication import RemoteStore, Replication
        from mosaicrec.serving.service import Service

        self.spec = spec
        refs = shared[0]  # the refs come inside a list: Ray would resolve them at the top level of a call
        replication = Replication(writer)
        start = replication.register()  # before reading the store: what is written after is in the log
        if start["model_dir"]:  # a replica started after a reload serves the model the others swapped to
            from mosaicrec.models import load_model

            folder = Path(spec.model_root) / start["model_dir"]
            model, info = load_model(folder), TrainingInfo.load(folder)
            info = info.model_copy(update={"threshold": ray.get(refs["info"]).threshold})
        else:
            model, info = ray.get(refs["model"]), ray.get(refs["info"])
        self.service = Service(model, spec.store_path, ray.get(refs["content"]), info=info,
                               retrieval=spec.retrieval, model_root=spec.model_root, index_dir=spec.index_dir,
                               media=MediaPolicy(spec.media_root, spec.max_media_bytes, tuple(spec.media_read_roots),
                                                 max_video_bytes=spec.max_video_bytes),
                               kg=ray.get(refs["kg"]), store=RemoteStore(writer), replication=replication,
                               explore=spec.explore)
        replication.follow(self.service)
        self.name = replication.name

    def __serve_build_asgi_app__(self):
        from mosaicrec.serving.app import create_app

        spec = self.spec
        return create_app(self.service, spec.keys, rate_limit=spec.rate_limit, burst=2 * spec.rate_limit,
                          max_upload_bytes=None, model_dir=spec.model_dir, jobs=None,
                          public_docs=spec.public_docs, served_by=self.name)


@dataclass
class Replicated:
    """A running replicated service: its URL, and how to stop it."""

    url: str
    replicas: int
    ready_seconds: float
    writer: Any
    spec: ReplicaSpec
    shared: dict[str, Any]  # object refs: what a replica is built from, for one started later
    actors: list[Any] | None = None  # the replicas themselves with the reuseport ingress

    def describe(self) -> str:
        how = "Ray Serve" if self.actors is None else "one port, no proxy"
        return (f"serving {self.replicas} replicas on {self.url} ({how}), ready in {self.ready_seconds:.1f}s; "
                "writes through one writer, followed by every replica")

    def stop(self) -> None:
        import ray

        if self.actors is None:
            from ray import serve

            serve.delete(APP_NAME)
        else:
            ray.get([a.stop.remote() for a in self.actors])
            for a in self.actors:
                ray.kill(a)
        ray.get(self.writer.close.remote())  # the store closed cleanly before its process goes
        ray.kill(self.writer)


class PortReplica(Replica):
    """A replica serving HTTP itself on a port it shares with the others (``SO_REUSEPORT``)."""

    def __init__(self, spec: ReplicaSpec, shared: list[dict[str, Any]], writer, host: str, port: int) -> None:
        import socket
        import threading

        import uvicorn

        super().__init__(spec, shared, writer)
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
        self.server = uvicorn.Server(uvicorn.Config(self.__serve_build_asgi_app__(), log_level="warning",
                                                    access_log=False))
        threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True, name="http").start()

    def ready(self) -> str:
        while not self.server.started:
            time.sleep(0.02)
        return self.name

    def stop(self) -> None:
        self.server.should_exit = True
        self.service.close()


def check_replicas(opts: ServeOptions, replicas: int, ingress: str) -> dict[str, KeyKind]:
    """Refuse what replicas cannot do before Ray starts; the API keys."""
    if ingress not in ("serve", "reuseport"):
        raise MosaicError(f"--ingress must be serve or reuseport, not {ingress!r}")
    if replicas < 1:
        raise MosaicError(f"--replicas must be at least 1, got {replicas}")
    if opts.bandit is not None:
        raise MosaicError("--bandit learns in one process; it cannot run with --replicas")
    return serving_keys(opts)


def start_replicas(opts: ServeOptions, replicas: int, host: str = "127.0.0.1", port: int = 8000,
                   console: Console | None = None, ingress: str = "serve") -> Replicated:
    """Deploy ``replicas`` replicas on the Ray session this process has, behind ``ingress`` (``serve`` or
    ``reuseport``: see the module), and return once they all answer."""
    import ray

    from mosaicrec.serving.replication import Writer

    keys = check_replicas(opts, replicas, ingress)
    t0 = time.perf_counter()
    trained = load_trained(opts.model_dir, opts.store)
    content = _content(opts, trained, console)
    root = (opts.model_root or opts.model_dir.resolve().parent).resolve()
    model_dir = opts.model_dir.resolve()
    spec = ReplicaSpec(str(trained.store_path), keys, str(root),
                       str(model_dir.relative_to(root)) if model_dir.is_relative_to(root) else None,
                       str(model_dir / "index"),
                       str(opts.media_root or Path(default_store_path()).parent / "media"),
                       [str(p) for p in opts.media_read_roots], int(opts.max_media_mb * 1e6), opts.retrieval,
                       opts.rate_limit, opts.public_docs, explore_config(opts),
                       max_video_bytes=int(opts.max_video_mb * 1e6))
    writer = ray.remote(Writer).options(name=WRITER_NAME, num_cpus=0, max_concurrency=1000).remote(
        str(trained.store_path))
    shared = {"model": ray.put(trained.model), "info": ray.put(trained.info), "content": ray.put(content),
              "kg": ray.put(_kg(opts, trained.items, console))}
    if ingress == "reuseport":
        actor = ray.remote(PortReplica).options(num_cpus=0, max_concurrency=4)
        actors = [actor.remote(spec, [shared], writer, host, port) for _ in range(replicas)]
        ray.get([a.ready.remote() for a in actors])
        return Replicated(f"http://{host}:{port}", replicas, time.perf_counter() - t0, writer, spec, shared, actors)
    from ray import serve

    serve.start(http_options={"host": host, "port": port})
    deployment = serve.deployment(serve.ingress()(Replica), name="replica", num_replicas=replicas,
                                  ray_actor_options={"num_cpus": 0}, max_ongoing_requests=200)
    serve.run(deployment.bind(spec, [shared], writer), name=APP_NAME, route_prefix="/")
    return Replicated(f"http://{host}:{port}", replicas, time.perf_counter() - t0, writer, spec, shared)


def _content(opts: ServeOptions, trained, console: Console | None) -> ItemContent | None:
    """The content every replica serves: saved or given, with the missing items encoded first (a replica
    never encodes in the background)."""
    if opts.no_content:
        return None
    content, specs = served_content(opts, trained)
    missing = missing_content(trained.items, content)
    if missing:
        if console is not None:
            console.print(f"encoding {len(missing):,} items before the replicas start", highlight=False)
        content = encode_missing(trained.items, missing, content, specs,
                                 opts.text_fields or trained.info.text_fields, trained.store_path, trained.info.fields,
                                 encoder_params(trained.info))
    return content
