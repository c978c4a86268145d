"""Admin routes (admin key): reload a model folder from the model root, retrain beside the service."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from mosaicrec.serving.routes.common import ADMIN, service
from mosaicrec.serving.schemas import JobOut, ReloadIn, ReloadOut, RetrainIn

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
