"""The experiment runner: split once, train every model, evaluate on the same split, report.

With item content and a ``[cold_start]`` section, each model is also trained and evaluated in two
cold-start scenarios: **new items** (a share of items held out with all their events; they are ranked
among themselves, since no model has seen them) and **new users** (a share of users held out; each is shown
to the model only through their first ``support`` events and, optionally, a profile embedding, and the rest
of their events are predicted). Models that cannot score new users get no value there.

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
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from mosaicrec import __version__
from mosaicrec.data.content import ItemContent, profile_texts
from mosaicrec.data.schema import Dataset
from mosaicrec.data.splits import SplitConfig, cold_item_split, cold_user_split, split, to_implicit
from mosaicrec.errors import NotSupportedError
from mosaicrec.fusion import concat_features
from mosaicrec.evaluation.protocol import (EvaluationConfig, diversity_tradeoff, evaluate_ranking, evaluate_ratings,
                                           item_popularity)
from mosaicrec.models.base import BaseRecommender, ModelSpec, create


class ColdStartConfig(BaseModel):
    """Cold-start scenarios run next to the warm split (the ``[cold_start]`` section of a config)."""

    model_config = ConfigDict(extra="forbid")

    items: float = Field(0.0, ge=0.0, lt=1.0, description="share of items held out whole (0: no new-item run)")
    users: float = Field(0.0, ge=0.0, lt=1.0, description="share of users held out whole (0: no new-user run)")
    support: int = Field(3, ge=0, description="events of a new user the model is shown (their first by time)")
    profile_encoder: str | None = Field(None, description="text encoder embedding user profiles "
                                        "(attributes + titles of their items), e.g. minilm; None: no profiles")


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
    #: scenario name ("new items", "new users") → metrics; an empty dict where the model cannot score
    cold: dict[str, dict[str, float]] = field(default_factory=dict)
    #: MMR re-ranking at each λ: NDCG@10 and diversity@10 (the accuracy/diversity trade-off curve)
    tradeoff: list[dict[str, float]] = field(default_factory=list)
    #: with ``[evaluation] context``: each context value's lists and mean metrics
    by_context: dict[str, dict[str, float]] = field(default_factory=dict)


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
                   keep_models: bool = False, content: ItemContent | None = None,
                   cold_start: ColdStartConfig | None = None) -> ExperimentResult:
    """Run one experiment and return its results (reports are written by :mod:`.report`).

    ``content`` goes to every model's ``fit`` (content models need it); ``cold_start`` adds the new-item
    and new-user scenarios."""
    eval_config = eval_config or EvaluationConfig()
    console = console or Console(stderr=True)
    train, test = split(dataset.interactions, split_config)
    threshold = split_config.rating_threshold
    train_pos, test_pos = to_implicit(train, threshold), to_implicit(test, threshold)
    exclude = train.binary
    popularity = item_popularity(train)
    has_genres = "genres" in _attribute_names(dataset)
    item_vectors = dataset.item_attribute_matrix("genres") if has_genres else dataset.item_attribute_matrix()
    split_info = {
        **split_config.model_dump(), "train_events": train.n_events, "test_events": test.n_events,
        "train_positives": train_pos.n_events, "test_positives": test_pos.n_events,
        "diversity_vectors": "training co-occurrence" if item_vectors is None
        else "item genres" if has_genres else "item attributes",
    }

    cold_start = cold_start or ColdStartConfig()
    encoder = None
    if cold_start.profile_encoder:
        from mosaicrec.encoders import create_encoder  # evaluation sits above encoders

        encoder = create_encoder(cold_start.profile_encoder)

    def profiles(history) -> np.ndarray | None:
        if encoder is None:
            return None
        texts = profile_texts(dataset.users, dataset.interactions.user_ids, dataset.items,
                              dataset.interactions.item_ids, history)
        return encoder.encode([t or "a new user" for t in texts])

    warm_profiles = profiles(train_pos.binary)
    scenarios = _cold_scenarios(dataset, split_config, cold_start, content)
    for sc in scenarios.values():
        sc["profiles_train"] = profiles(sc["train"].binary)
        sc["profiles_support"] = profiles(sc["support"].binary) if "support" in sc else None
    split_info["cold_start"] = {k: {"train_events": v["train"].n_events, "test_events": v["test"].n_events,
                                    "held_out": v["held_out"]} for k, v in scenarios.items()}

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
            model.fit(train if model.predicts_ratings else train_pos, content=content,
                      user_profiles=warm_profiles)
            fit_s = time.perf_counter() - t0
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            progress.update(task, description=f"evaluating {spec.display}")
            t0 = time.perf_counter()
            result = evaluate_ranking(model, test_pos, exclude=exclude, config=eval_config,
                                      item_popularity=popularity, item_vectors=item_vectors,
                                      context=eval_config.context)
            metrics = dict(result.metrics)
            if model.predicts_ratings and dataset.rating_scale is not None:
                metrics.update(evaluate_ratings(model, test))
            split_info.setdefault("users_evaluated", int(len(np.unique(result.users))))
            if eval_config.context:
                split_info.setdefault("lists_evaluated", int(len(result.users)))
            tradeoff = []
            if eval_config.mmr_lambdas and content is not None:
                fused = concat_features(content.align(train.item_ids), content.modalities)
                fused /= np.maximum(np.linalg.norm(fused, axis=1, keepdims=True), 1e-12)
                tradeoff = diversity_tradeoff(model, test_pos, exclude=exclude, vectors=fused,
                                              lambdas=eval_config.mmr_lambdas, diversity_vectors=item_vectors)
            cold = {}
            for sc_name, sc in scenarios.items():
                progress.update(task, description=f"{spec.display}: {sc_name}")
                cold[sc_name] = _run_cold(spec, sc, content, eval_config, popularity, item_vectors)
            rows.append(ModelResult(spec.display, spec.name, model.config.model_dump(), fit_s,
                                    time.perf_counter() - t0, peak, metrics, model if keep_models else None, cold,
                                    tradeoff, result.by_context))
            progress.advance(task)
    return ExperimentResult(name=name, dataset=dataset.summary(), split=split_info, rows=rows,
                            config=config or {}, environment=environment())


def _cold_scenarios(dataset: Dataset, split_config: SplitConfig, cold: ColdStartConfig,
                    content: ItemContent | None) -> dict[str, dict[str, Any]]:
    """Train/test (and support) events of each cold-start scenario, on the positives."""
    if (cold.items or cold.users) and content is None:
        from mosaicrec.errors import ConfigError

        raise ConfigError("cold-start scenarios need item content: add a [content] section")
    events = to_implicit(dataset.interactions, split_config.rating_threshold)
    out: dict[str, dict[str, Any]] = {}
    if cold.items:
        train, test = cold_item_split(events, cold.items, split_config.seed)
        out["new items"] = {"train": train, "test": test, "exclude": train.binary,
                            "candidates": np.unique(test.items), "held_out": int(len(np.unique(test.items)))}
    if cold.users:
        train, support, test = cold_user_split(events, cold.users, cold.support, split_config.seed)
        out["new users"] = {"train": train, "support": support, "test": test, "exclude": support.binary,
                            "users": np.unique(test.users), "held_out": int(len(np.unique(test.users)))}
    return out


def _run_cold(spec: ModelSpec, sc: dict[str, Any], content: ItemContent | None, cfg: EvaluationConfig,
              popularity: np.ndarray, item_vectors) -> dict[str, float]:
    model = create(spec.name, spec.params).fit(sc["train"], content=content, user_profiles=sc["profiles_train"])
    history, prof = (sc["support"].binary, sc["profiles_support"]) if "support" in sc else (None, None)

    def fold_in(users: np.ndarray) -> np.ndarray:
        return model.score_histories(history[users], None if prof is None else prof[users])
    score_fn = fold_in if history is not None else None
    try:
        result = evaluate_ranking(model, sc["test"], exclude=sc["exclude"], config=cfg,
                                  item_popularity=popularity, item_vectors=item_vectors,
                                  users=sc.get("users"), candidates=sc.get("candidates"), score_fn=score_fn)
    except NotSupportedError:
        return {}
    return result.metrics


def _attribute_names(dataset: Dataset) -> set[str]:
    return {k for attrs in dataset.items["attributes"] for k in (attrs or {})}
