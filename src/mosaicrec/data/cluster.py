"""Where the Ray paths run: an existing Ray session, a cluster at an address, or a local one started here.

Every scale-out path (encoding, ALS/BPR training, top-k export, evaluation) asks :func:`ray_session` for
Ray and leaves alone a session it did not start. The address comes from the caller, else
``$MOSAICREC_RAY_ADDRESS`` (e.g. ``ray://head:10001`` for a real cluster), else ``"local"``: a local
cluster with ``workers`` CPUs (so 4 workers on a 2-core machine are 4 processes sharing 2 cores).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mosaicrec.errors import ConfigError

ENV = "MOSAICREC_RAY_ADDRESS"


def import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ConfigError("the Ray paths need ray: pip install 'mosaicrec[ray]' (`make setup` installs it)") from e
    return ray


@contextmanager
def ray_session(address: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """The ``ray`` module with a session up: reuse a running one, else connect to ``address`` (or
    ``$MOSAICREC_RAY_ADDRESS``), else start a local cluster of ``workers`` CPUs, shut down on exit."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    address = address or os.environ.get(ENV) or "local"
    if address == "local":
        ray.init(num_cpus=workers or None, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=address, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def shards(n: int, parts: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges cutting ``range(n)`` into ``parts`` near-equal contiguous pieces."""
    parts = max(1, min(parts, n)) if n else 1
    bounds = [round(n * p / parts) for p in range(parts + 1)]
    return [(bounds[p], bounds[p + 1]) for p in range(parts)]


def cpus_each(ray: Any, workers: int) -> float:
    """One CPU per worker, or an equal share where the cluster has fewer CPUs than workers (else the extra
    workers would wait for a CPU forever)."""
    return min(1.0, float(ray.cluster_resources().get("CPU", 1.0)) / workers)

