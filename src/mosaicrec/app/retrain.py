"""Ask a running service to retrain its model on a snapshot of its store and swap the result in, and wait
for it (the client side of ``POST /admin/retrain``), or for a snapshot of its store with the impression log
(``POST /admin/snapshot``, what ``mosaicrec ope --server`` reads). Every way the server cannot be asked (no scheme, a bad
address, nothing listening, no answer in time, an answer that is not the API's) is one sentence."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx

from mosaicrec.errors import MosaicError


def check_server_url(server: str) -> str:
    """``server`` as a base URL, or a :class:`MosaicError` saying what a URL must look like."""
    parts = urlsplit(server.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise MosaicError(f"--server must be a URL such as http://127.0.0.1:8000, got {server!r}")
    return server.strip().rstrip("/")


def _detail(r: httpx.Response) -> str:
    try:
        return str(r.json().get("detail", r.text))[:300]
    except ValueError:
        return r.text[:300] or r.reason_phrase


@contextmanager
def _admin(server: str, admin_key: str, timeout: float, expecting: str) -> Iterator[httpx.Client]:
    """A client for the service's admin routes; every way the call can fail is one sentence."""
    base = check_server_url(server)
    try:
        with httpx.Client(base_url=base, timeout=timeout, headers={"X-API-Key": admin_key}) as client:
            yield client
    except httpx.ConnectError as e:
        raise MosaicError(f"cannot reach {base}: {_reason(e)} (is `mosaicrec serve` running there?)") from None
    except httpx.TimeoutException:
        raise MosaicError(f"{base} did not answer within {timeout:g} s") from None
    except httpx.HTTPError as e:
        raise MosaicError(f"talking to {base} failed: {_reason(e)}") from None
    except (ValueError, KeyError, TypeError):
        raise MosaicError(f"{base} did not answer as a mosaicrec service (no {expecting} in its reply)") from None


def _checked(r: httpx.Response, what: str = "the server refused") -> dict[str, Any]:
    if r.status_code >= 400:
        raise MosaicError(f"{what}: {r.status_code} {_detail(r)}")
    return r.json()


def retrain(server: str, admin_key: str, model: str | None = None, params: dict[str, Any] | None = None, *,
            wait: bool = True, poll: float = 1.0, timeout: float = 30.0,
            on_state: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Start a retrain job and (with ``wait``) poll it until it is done; returns the job's last state.
    A failed job is a :class:`MosaicError` with the server's message."""
    with _admin(server, admin_key, timeout, "job") as client:
        job = _checked(client.post("/admin/retrain", json={"model": model, "params": params}))
        if on_state is not None:
            on_state(job)
        while wait and job["state"] in ("queued", "running"):
            time.sleep(poll)
            job = _checked(client.get(f"/admin/jobs/{job['job_id']}"), "the server lost the job")
            if on_state is not None:
                on_state(job)
    if job["state"] == "failed":
        raise MosaicError(f"retrain failed: {job.get('message')}")
    return job


def log_snapshot(server: str, admin_key: str, timeout: float = 120.0) -> str:
    """Ask a running service for a snapshot of its store with the impression log (``POST
    /admin/snapshot``); returns the folder it was written to (on the server's machine)."""
    with _admin(server, admin_key, timeout, "snapshot") as client:
        return str(_checked(client.post("/admin/snapshot"))["folder"])


def _reason(e: Exception) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[-1][:200]
