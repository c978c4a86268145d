"""``mosaicrec serve --replicas N``: the service as N replicas of a Ray Serve deployment.

The driver (this process) reads the model and the store, encodes what content is missing (in a child
process, before any replica starts), and puts the model, the content and the knowledge graph in Ray's
object store: every replica on a machine maps the same copy of their arrays (read-only, shared memory),
and the ANN indexes are mapped from the model folder's ``index/``. One :class:`~mosaicrec.serving.
replication.Writer` actor owns the DuckDB store and the change log; each replica reads and writes through it
and follows the log (:mod:`mosaicrec.serving.replication`). Ray Serve's proxy spreads requests over the
replicas; ``--ray-address`` joins an existing cluster (the replicas then spread over its machines, which must
see the model folder and the media root at the same paths).

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

from mosaicrec.app.server import ServeOptions, _kg, encode_missing, served_content, serving_keys
from mosaicrec.app.trained import load_trained, missing_content
from mosaicrec.data.content import ItemContent
from mosaicrec.data.store import default_store_path
from mosaicrec.errors import MosaicError
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


class Replica:
    """One replica: a service over the shared store, following the change log, behind the HTTP app."""

    def __init__(self, spec: ReplicaSpec, shared: list[dict[str, Any]], writer) -> None:
        import ray

        from mosaicrec.serving.media import MediaPolicy
        from mosaicrec.serving.replication import RemoteStore, Replication
        from mosaicrec.serving.service import Service

        self.spec = spec
        refs = shared[0]
        replication = Replication(writer)
        start = replication.register()  # before reading the store: what is written after is in the log
        model, info = ray.get(refs["model"]), ray.get(refs["info"])
        self.service = Service(model, spec.store_path, ray.get(refs["content"]), info=info,
                               retrieval=spec.retrieval, model_root=spec.model_root, index_dir=spec.index_dir,
                               media=MediaPolicy(spec.media_root, spec.max_media_bytes, tuple(spec.media_read_roots)),
                               kg=ray.get(refs["kg"]), store=RemoteStore(writer), replication=replication)
        if start["model_dir"]:  # a replica started after a reload serves the reloaded model
            svc = self.service
            svc.swap_model(*svc.load_model_dir(svc.resolve_model_dir(start["model_dir"])))
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

    def describe(self) -> str:
        return (f"serving {self.replicas} replicas on {self.url} (Ray Serve), ready in {self.ready_seconds:.1f}s; "
                "writes through one writer, followed by every replica")

    def stop(self) -> None:
        import ray
        from ray import serve

        serve.delete(APP_NAME)
        ray.kill(self.writer)


def start_replicas(opts: ServeOptions, replicas: int, host: str = "127.0.0.1", port: int = 8000,
                   console: Console | None = None) -> Replicated:
    """Deploy ``replicas`` replicas on the Ray session this process has (see the module) and return once
    they all answer."""
    import ray
    from ray import serve

    from mosaicrec.serving.replication import Writer

    if replicas < 1:
        raise MosaicError(f"--replicas must be at least 1, got {replicas}")
    if opts.bandit is not None:
        raise MosaicError("--bandit learns in one process; it cannot run with --replicas")
    keys = serving_keys(opts)
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
                       opts.rate_limit, opts.public_docs)
    writer = ray.remote(Writer).options(name=WRITER_NAME, num_cpus=0, max_concurrency=1000).remote(
        str(trained.store_path))
    shared = {"model": ray.put(trained.model), "info": ray.put(trained.info), "content": ray.put(content),
              "kg": ray.put(_kg(opts, trained.items, console))}
    serve.start(http_options={"host": host, "port": port})
    deployment = serve.deployment(serve.ingress()(Replica), name="replica", num_replicas=replicas,
                                  ray_actor_options={"num_cpus": 0}, max_ongoing_requests=200)
    serve.run(deployment.bind(spec, [shared], writer), name=APP_NAME, route_prefix="/")
    return Replicated(f"http://{host}:{port}", replicas, time.perf_counter() - t0, writer)


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
                                 opts.text_fields or trained.info.text_fields, trained.store_path, trained.info.fields)
    return content
