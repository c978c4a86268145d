"""Admin routes (admin key): reload a model folder from the model root, retrain beside the service, and
snapshot the store with its impression log for off-policy evaluation beside it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from mosaicrec.serving.routes.common import ADMIN, service
from mosaicrec.serving.schemas import JobOut, ReloadIn, ReloadOut, RetrainIn, SnapshotOut

router = APIRouter(tags=["admin"])


@router.post("/admin/reload", response_model=ReloadOut, dependencies=[ADMIN])
async def reload(request: Request, body: ReloadIn | None = None) -> dict[str, Any]:
    """Swap in a model folder from the model root (default: the folder the server started with). It must
    score this catalog and read content made by the same encoders; a folder that cannot be loaded is a 422
    and the old model keeps serving."""
    folder = body.model_dir if body and body.model_dir else request.app.state.model_dir
    return await run_in_threadpool(service(request).reload, folder)


@router.post("/admin/retrain", response_model=JobOut, status_code=202, dependencies=[ADMIN])
def retrain(request: Request, body: RetrainIn | None = None) -> dict[str, Any]:
    """Retrain on a snapshot of the store beside the running service (the store stays open for writes),
    save the model under the model root, and reload it when training succeeds. Poll ``/admin/jobs/{id}``."""
    jobs = request.app.state.jobs
    if jobs is None:
        raise HTTPException(501, "retraining needs a model root (start the server with --model-root)")
    return jobs.start(body.model if body else None, body.params if body else None).describe()


@router.get("/admin/jobs/{job_id}", response_model=JobOut, dependencies=[ADMIN])
def job(request: Request, job_id: str) -> dict[str, Any]:
    jobs = request.app.state.jobs
    found = jobs.get(job_id) if jobs is not None else None
    if found is None:
        raise HTTPException(404, f"unknown job {job_id!r}")
    return found.describe()


#: log snapshots kept under the model root's .snapshots/ (older ones are removed: each can be large)
KEEP_LOG_SNAPSHOTS = 3


@router.post("/admin/snapshot", response_model=SnapshotOut, dependencies=[ADMIN])
def snapshot(request: Request) -> dict[str, Any]:
    """Write a consistent snapshot of the store *with its impression log* (the lists served so far
    included) under the model root's ``.snapshots/``, for ``mosaicrec ope --server`` to read while the
    service keeps the store. The newest three are kept."""
    import shutil
    import time
    import uuid

    svc = service(request)
    if svc.model_root is None or svc.replication is not None:
        raise HTTPException(501, "log snapshots need a model root and one process (start with --model-root, "
                                 "without --replicas)")
    root = svc.model_root / ".snapshots"
    folder = root / f"log-{int(time.time() * 1000):013d}-{uuid.uuid4().hex[:8]}"
    info = svc.export_snapshot(folder, log=True)
    old = sorted(p for p in root.glob("log-*") if p.is_dir())[:-KEEP_LOG_SNAPSHOTS]
    for p in old:
        shutil.rmtree(p, ignore_errors=True)
    return {"folder": str(folder), "taken_at": info["taken_at"], "counts": info["counts"]}
