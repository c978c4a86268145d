"""Train a servable model: on everything in the store (or a snapshot of it, beside a running service),
saved with its training record (the like rule, when the data was read, the encoders of content models and
their content), so that serving starts without encoding and treats live events as training did."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rich.console import Console

from mosaicrec.app.trained import catalog_content
from mosaicrec.data.datasets import ingest_source, resolve_source
from mosaicrec.data.schema import Dataset
from mosaicrec.data.store import Store
from mosaicrec.errors import MosaicError
from mosaicrec.models.base import BaseRecommender
from mosaicrec.models.registry import MODELS
from mosaicrec.models.training import TrainingInfo, default_threshold, fit_on_dataset, save_trained


@dataclass
class TrainRequest:
    """What to train, on what, and where to save it (plain values: a retrain job sends it to a child
    process). ``snapshot``: a folder written by :meth:`~mosaicrec.data.store.Store.export_snapshot`, read
    instead of the store; ``encoder``: ``NAME=ENCODER`` per content feature of a content model;
    ``fields``: a content feature's own text fields."""

    model: str
    output: Path
    params: dict[str, Any] = field(default_factory=dict)
    dataset: str | None = None
    store: Path | None = None
    snapshot: Path | None = None
    threshold: float | None = None
    encoder: list[str] | None = None
    text_fields: list[str] | None = None
    fields: dict[str, list[str]] = field(default_factory=dict)
    #: content name → its encoder's parameters, e.g. {"video": {"frames": "color-texture"}}
    encoder_params: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class TrainResult:
    model: BaseRecommender
    info: TrainingInfo
    seconds: float
    events: int

    def describe(self) -> str:
        rule = f"weight ≥ {self.info.threshold:g}" if self.info.threshold is not None else "weight > 0"
        return f"trained {self.model!r} in {self.seconds:.2f}s on {self.info.dataset} (positives: {rule})"


def read_training_data(req: TrainRequest) -> tuple[Dataset, Path, float]:
    """The dataset to train on, the store it comes from, and when it was read."""
    if req.snapshot is not None:
        if req.dataset or req.store:
            raise MosaicError("--snapshot trains on the snapshot alone: leave out --dataset and --store")
        with Store.open_snapshot(req.snapshot) as st:
            data = st.load_dataset()
        taken = json.loads((Path(req.snapshot) / "snapshot.json").read_text())
        return data, Path(taken["source"]), float(taken["taken_at"])
    with Store(req.store) as st:
        if req.dataset:
            ingest_source(st, resolve_source(req.dataset))
        as_of = time.time()
        return st.load_dataset(), Path(st.path), as_of


def train_servable(req: TrainRequest, on_epoch: Callable[[dict], None] | None = None,
                   console: Console | None = None) -> TrainResult:
    """Train ``req.model`` on the store's events and save it to ``req.output`` with its record."""
    MODELS.require(req.model)
    data, store_path, as_of = read_training_data(req)
    if data.interactions.n_events == 0:
        raise MosaicError(f"the store {store_path} holds no events; run `mosaicrec ingest` first")
    content, specs = None, {}
    if MODELS[req.model].needs_content:
        content, specs = catalog_content(data.items, store_path, req.encoder, req.text_fields, req.fields, console,
                                         req.encoder_params)
    used = req.threshold if req.threshold is not None else default_threshold(data)
    t0 = time.perf_counter()
    fitted = fit_on_dataset(data, req.model, req.params, used, content=content, on_epoch=on_epoch)
    seconds = time.perf_counter() - t0
    info = TrainingInfo(dataset=data.name, store=str(store_path.resolve()), threshold=used, data_as_of=as_of,
                        encoders=specs, text_fields=req.text_fields, fields=req.fields)
    save_trained(fitted, req.output, info, content)
    return TrainResult(fitted, info, seconds, data.interactions.n_events)
