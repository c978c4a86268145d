"""Retraining beside a running service.

DuckDB lets one process hold a store for writing, and the service holds it, so ``mosaicrec train`` cannot
open it meanwhile. A retrain job therefore (1) exports a consistent Parquet snapshot of the store through
the service's own connection (writes go on), (2) trains in a child process
(:func:`~mosaicrec.app.training.train_servable` on the snapshot, what ``mosaicrec train --snapshot`` runs:
the child takes no core time from the server's interpreter and no lock), writing the model under the model
root, and (3) reloads it into the service, which swaps it in atomically. One job runs at a time.
"""

from __future__ import annotations

import multiprocessing
import shutil
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mosaicrec.app.training import TrainRequest
from mosaicrec.errors import MosaicError
from mosaicrec.models.registry import MODELS
from mosaicrec.serving.service import Conflict, Service


@dataclass
class Job:
    job_id: str
    model: str
    params: dict[str, Any]
    state: str = "queued"
    model_dir: str | None = None
    message: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    log: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "state": self.state, "model": self.model, "model_dir": self.model_dir,
                "message": self.message, "started_at": self.started_at, "finished_at": self.finished_at,
                "log_tail": "\n".join(self.log[-20:]) or None}


class RetrainJobs:
    """Runs retrain jobs for one service, one at a time (see the module docstring). The latest ``keep``
    jobs are remembered (``GET /admin/retrain/{id}``); older ones are forgotten."""

    def __init__(self, service: Service, timeout: float = 6 * 3600, keep: int = 100) -> None:
        if service.model_root is None:
            raise MosaicError("retraining needs a model root")
        self.service, self.timeout, self.keep = service, timeout, keep
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._running: Job | None = None

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def start(self, model: str | None = None, params: dict[str, Any] | None = None) -> Job:
        served = self.service.model
        name = model or served.name
        if name not in MODELS:
            raise MosaicError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
        if params is None:
            params = served.config.model_dump(mode="json") if name == served.name else {}
        with self._lock:
            if self._running is not None:
                raise Conflict(f"retrain job {self._running.job_id} is still running")
            job = Job(uuid.uuid4().hex[:12], name, dict(params))
            self.jobs[job.job_id] = job
            for old in list(self.jobs)[:max(0, len(self.jobs) - self.keep)]:  # dicts keep insertion order
                del self.jobs[old]
            self._running = job
        threading.Thread(target=self._run, args=(job,), name=f"retrain-{job.job_id}", daemon=True).start()
        return job

    def _run(self, job: Job) -> None:
        root = self.service.model_root
        assert root is not None
        job.state, job.started_at = "running", time.time()
        snap_dir = root / ".snapshots" / job.job_id
        out = root / f"{job.model}-{time.strftime('%Y%m%d-%H%M%S')}-{job.job_id[:6]}"
        try:
            self.service.export_snapshot(snap_dir)
            job.log.append(f"snapshot written to {snap_dir.name}")
            info = self.service.info
            req = TrainRequest(job.model, out, dict(job.params), snapshot=snap_dir, threshold=info.threshold,
                               encoder=[f"{name}={spec['name']}" for name, spec in info.encoders.items()] or None,
                               text_fields=info.text_fields, fields=dict(info.fields),
                               encoder_params={n: dict(s.get("params") or {}) for n, s in info.encoders.items()})
            self._train_in_child(job, req, root / ".snapshots" / f"{job.job_id}.log")
            job.log.append(f"model written to {out.name}")
            result = self.service.reload(str(out.relative_to(root)))
            job.model_dir = result["model_dir"]
            job.state, job.message = "succeeded", f"serving {result['model']} from {result['model_dir']}"
        except Exception as e:  # noqa: BLE001  a job reports its failure; the old model keeps serving
            job.state, job.message = "failed", str(e)
        finally:
            job.finished_at = time.time()
            shutil.rmtree(snap_dir, ignore_errors=True)
            (root / ".snapshots" / f"{job.job_id}.log").unlink(missing_ok=True)
            with self._lock:
                self._running = None

    def _train_in_child(self, job: Job, req: TrainRequest, log: Path) -> None:
        """Run the training in a fresh interpreter (spawned: no copy of the server's threads or store
        connection), its output to ``log``; the job keeps the log's tail. Refused on a failure or timeout."""
        ctx = multiprocessing.get_context("spawn")
        proc = ctx.Process(target=_train_child, args=(req, str(log)), name=f"train-{job.job_id}", daemon=True)
        proc.start()
        proc.join(self.timeout)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
            raise MosaicError(f"training ran past {self.timeout:.0f} s and was stopped")
        lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
        job.log += [ln for ln in lines if ln.strip()][-40:]
        if proc.exitcode != 0:
            raise MosaicError(f"training failed (exit {proc.exitcode}): "
                              + next((ln for ln in reversed(job.log) if "error" in ln.lower()), "see log_tail"))


def _train_child(req: TrainRequest, log: str) -> None:
    """A retrain job's child process: train and save, the output and any error going to ``log``."""
    import sys

    from rich.console import Console

    from mosaicrec.app.training import train_servable

    with open(log, "w") as out:
        sys.stdout = sys.stderr = out
        console = Console(file=out, width=120)
        try:
            result = train_servable(req, console=console)
            console.print(result.describe(), highlight=False)
        except MosaicError as e:
            out.write(f"error: {e}\n")
            out.flush()
            sys.exit(1)
        except BaseException:  # noqa: BLE001  the job reports it; the server keeps serving
            out.write("error: " + traceback.format_exc().strip().splitlines()[-1] + "\n")
            out.write(traceback.format_exc())
            out.flush()
            sys.exit(1)
