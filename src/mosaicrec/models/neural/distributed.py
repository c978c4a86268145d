"""Data-parallel training of the neural models on Ray Train (``workers = N`` in their params).

Ray Train starts N workers joined in a torch process group (gloo, on CPUs). Each runs the model's own
training (:meth:`_NeuralModel._fit`) with the same seed, so each builds the same network from the same BPR
start and draws the same batches; each computes the loss of its share of a batch (rows ``rank::N``), and
torch's DistributedDataParallel averages the gradients before every step. A step is therefore the
one-process step on the whole batch, up to the order of float additions, and every worker holds the same
weights, so validation and early stopping agree without messages. Worker 0 returns the trained vectors.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from mosaicrec.data.cluster import cpus_each, ray_session
from mosaicrec.data.schema import Interactions

STATE = "state.npz"


def _worker(config: dict[str, Any]) -> None:
    import ray.train
    import torch

    from ray.train import Checkpoint

    torch.set_num_threads(1)
    ctx = ray.train.get_context()
    model = config["model"]
    model._ddp = (ctx.get_world_rank(), ctx.get_world_size())
    model._fit(config["train"])
    if ctx.get_world_rank() == 0:
        with tempfile.TemporaryDirectory() as folder:
            state = {k: getattr(model, k + "_") for k in model._state_keys}
            if getattr(model, "best_epoch_", None) is not None:
                state["best_epoch"] = np.array([model.best_epoch_])
            np.savez(Path(folder) / STATE, **state)
            (Path(folder) / "history.json").write_text(__import__("json").dumps(model.history_, default=float))
            ray.train.report({"epochs": len(model.history_)}, checkpoint=Checkpoint.from_directory(folder))
    else:
        ray.train.report({"epochs": len(model.history_)})


def fit_data_parallel(model: Any, train: Interactions) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """Train a copy of ``model`` on ``model.config.workers`` Ray Train workers; returns its state (the
    arrays :meth:`_state` holds, and ``best_epoch``) and its epoch records."""
    import json

    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    cfg = model.config
    worker_model = copy.copy(model)
    worker_model.config = cfg.model_copy(update={"workers": 0, "threads": 1})
    worker_model.on_epoch = None
    with ray_session(cfg.ray_address, cfg.workers) as ray, tempfile.TemporaryDirectory() as runs:
        trainer = TorchTrainer(
            _worker, train_loop_config={"model": worker_model, "train": train},
            scaling_config=ScalingConfig(num_workers=cfg.workers, use_gpu=False,
                                         resources_per_worker={"CPU": cpus_each(ray, cfg.workers)}),
            torch_config=None, run_config=RunConfig(storage_path=runs, name="mosaicrec"))
        result = trainer.fit()
        with result.checkpoint.as_directory() as folder:
            with np.load(Path(folder) / STATE) as saved:
                state = {k: saved[k] for k in saved.files}
            history = json.loads((Path(folder) / "history.json").read_text())
    for record in history:
        record["workers"] = cfg.workers
        if model.on_epoch is not None:
            model.on_epoch({**record, "total": cfg.epochs})
    return state, history
