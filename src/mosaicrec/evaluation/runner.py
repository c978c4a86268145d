"""The experiment runner: split once, train every model, evaluate on the same split, report.

Rating models (``predicts_ratings``) train on the explicit events and are also scored with RMSE/MAE;
the others train on the positives (weight ≥ ``rating_threshold``). All models are ranked against the same
relevant test items with the same exclusion (every training event of the user), so rows are comparable.
"""

from __future__ import annotations

import os
import platform
import time
import tracemalloc
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from mosaicrec import __version__
from mosaicrec.data.schema import Dataset
from mosaicrec.data.splits import SplitConfig, split, to_implicit
from mosaicrec.evaluation.protocol import (EvaluationConfig, evaluate_ranking, evaluate_ratings,
                                           item_popularity)
from mosaicrec.models.base import BaseRecommender, ModelSpec, create


@dataclass
class ModelResult:
    label: str
    model: str
    params: dict[str, Any]
    fit_seconds: float
    eval_seconds: float
    peak_memory_mb: float
    metrics: dict[str, float]
    fitted: BaseRecommender | None = field(default=None, repr=False)


@dataclass
class ExperimentResult:
    name: str
    dataset: dict[str, Any]
    split: dict[str, Any]
    rows: list[ModelResult]
    config: dict[str, Any]
    environment: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "dataset": self.dataset, "split": self.split, "config": self.config,
            "environment": self.environment,
            "models": [{k: v for k, v in r.__dict__.items() if k != "fitted"} for r in self.rows],
        }


def environment() -> dict[str, Any]:
    import numba
    import scipy
    return {"mosaicrec": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "numba": numba.__version__, "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count()}


def run_experiment(dataset: Dataset, split_config: SplitConfig, models: list[ModelSpec],
                   eval_config: EvaluationConfig | None = None, *, name: str = "experiment",
                   config: dict[str, Any] | None = None, console: Console | None = None,
                   keep_models: bool = False) -> ExperimentResult:
    """Run one experiment and return its results (reports are written by :mod:`.report`)."""
    eval_config = eval_config or EvaluationConfig()
    console = console or Console(stderr=True)
    train, test = split(dataset.interactions, split_config)
    threshold = split_config.rating_threshold
    train_pos, test_pos = to_implicit(train, threshold), to_implicit(test, threshold)
    exclude = train.binary
    popularity = item_popularity(train)
    item_vectors = dataset.item_attribute_matrix("genres") if "genres" in _attribute_names(dataset) \
        else dataset.item_attribute_matrix()
    split_info = {
        **split_config.model_dump(), "train_events": train.n_events, "test_events": test.n_events,
        "train_positives": train_pos.n_events, "test_positives": test_pos.n_events,
        "diversity_vectors": "item genres" if item_vectors is not None else "training co-occurrence",
    }

    rows: list[ModelResult] = []
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("models", total=len(models))
        for spec in models:
            model = create(spec.name, spec.params)
            progress.update(task, description=f"fitting {spec.display}")
            tracemalloc.start()
            t0 = time.perf_counter()
            model.fit(train if model.predicts_ratings else train_pos)
            fit_s = time.perf_counter() - t0
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            progress.update(task, description=f"evaluating {spec.display}")
            t0 = time.perf_counter()
            result = evaluate_ranking(model, test_pos, exclude=exclude, config=eval_config,
                                      item_popularity=popularity, item_vectors=item_vectors)
            metrics = dict(result.metrics)
            if model.predicts_ratings and dataset.rating_scale is not None:
                metrics.update(evaluate_ratings(model, test))
            split_info.setdefault("users_evaluated", int(len(result.users)))
            rows.append(ModelResult(spec.display, spec.name, model.config.model_dump(), fit_s,
                                    time.perf_counter() - t0, peak, metrics, model if keep_models else None))
            progress.advance(task)
    return ExperimentResult(name=name, dataset=dataset.summary(), split=split_info, rows=rows,
                            config=config or {}, environment=environment())


def _attribute_names(dataset: Dataset) -> set[str]:
    return {k for attrs in dataset.items["attributes"] for k in (attrs or {})}
