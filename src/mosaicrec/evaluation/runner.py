"""The experiment runner: split, (tune on validation,) train every model, evaluate on the same split, report;
once per seed, with mean ± std over seeds and paired comparisons against a baseline model.

With item content and a ``[cold_start]`` section, each model is also trained and evaluated in two
cold-start scenarios: **new items** (a share of items held out with all their events; they are ranked
among themselves, since no model has seen them) and **new users** (a share of users held out; each is shown
to the model only through their first ``support`` events and, optionally, a profile embedding, and the rest
of their events are predicted). Models that cannot score new users get no value there.

Rating models (``predicts_ratings``) train on the explicit events and are also scored with RMSE/MAE;
the others train on the positives (weight ≥ ``rating_threshold``). All models are ranked against the same
relevant test items with the same exclusion (every training event of the user), so rows are comparable.

With a ``[tuning]`` section, each model's hyper-parameters are chosen per seed and per scenario on a
validation part carved out of that scenario's training part by the same kind of split (pseudo-new items
and users for the cold scenarios, see :func:`~mosaicrec.data.splits.validation_split`); the model is then
refitted on the whole training part with the chosen values and the test part is scored once.
"""

from __future__ import annotations

import os
import platform
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from mosaicrec import __version__
from mosaicrec.data.content import ItemContent, profile_texts
from mosaicrec.data.schema import Dataset, Interactions
from mosaicrec.data.splits import (SplitConfig, cold_item_split, cold_user_split, k_core, split, to_implicit,
                                   validation_split)
from mosaicrec.errors import ConfigError, NotSupportedError
from mosaicrec.fusion import concat_features
from mosaicrec.evaluation.protocol import (EvaluationConfig, diversity_tradeoff, evaluate_ranking, evaluate_ratings,
                                           item_popularity)
from mosaicrec.evaluation.impressions import impression_metrics
from mosaicrec.evaluation.stats import mean_std, paired
from mosaicrec.evaluation.tuning import TuningConfig, apply, tune
from mosaicrec.models.base import BaseRecommender
from mosaicrec.models.registry import MODELS, ModelSpec, check_starts, create, seeded, start_params
from mosaicrec.models.query import Query


class ColdStartConfig(BaseModel):
    """Cold-start scenarios run next to the warm split (the ``[cold_start]`` section of a config)."""

    model_config = ConfigDict(extra="forbid")

    items: float = Field(0.0, ge=0.0, lt=1.0, description="share of items held out whole (0: no new-item run)")
    users: float = Field(0.0, ge=0.0, lt=1.0, description="share of users held out whole (0: no new-user run)")
    support: int = Field(3, ge=0, description="events of a new user the model is shown (their first by time)")
    profile_encoder: str | None = Field(None, description="text encoder embedding user profiles "
                                        "(attributes + titles of their items), e.g. minilm; None: no profiles")


WARM = "warm"


@dataclass
class Task:
    """One scenario of one seed: what models fit on, what they are scored against, and how."""

    name: str
    train: Interactions                      # positives the models fit on
    test: Interactions                       # relevant (positive) test events
    exclude: sp.csr_matrix                   # items never counted for a user (what they were shown)
    train_explicit: Interactions | None = None  # the explicit events (rating models; validation carves)
    test_explicit: Interactions | None = None
    candidates: np.ndarray | None = None     # new items: the held-out items, ranked among themselves
    users: np.ndarray | None = None          # new users: the held-out users
    support: Interactions | None = None      # new users: the events they are shown by
    held_out: int = 0
    #: history → profile embeddings (``None`` without a profile encoder); computed on first use, since
    #: encoding every user's profile text costs seconds and most models never read it
    profile_fn: Any = None
    _profiles: dict[str, np.ndarray | None] = field(default_factory=dict, repr=False)

    @cached_property
    def shown(self) -> Query:
        """New users: the support events as a query of every user, with times (a time-aware prior reads
        them); built once per task, not once per model."""
        return Query.of_events(self.support)

    def profiles(self, part: str) -> np.ndarray | None:
        """Profile embeddings of every user from the ``"train"`` or ``"support"`` events."""
        if self.profile_fn is None:
            return None
        if part not in self._profiles:
            events = self.train if part == "train" else self.support
            self._profiles[part] = self.profile_fn(events.binary)
        return self._profiles[part]


@dataclass
class ModelResult:
    label: str
    model: str
    params: dict[str, Any]
    fit_seconds: float
    eval_seconds: float
    peak_memory_mb: float
    #: warm metrics, the mean over seeds (and their standard deviation in ``std``)
    metrics: dict[str, float]
    fitted: BaseRecommender | None = field(default=None, repr=False)
    #: scenario name ("new items", "new users") → mean metrics; an empty dict where the model cannot score
    cold: dict[str, dict[str, float]] = field(default_factory=dict)
    #: MMR re-ranking at each λ: NDCG@10 and diversity@10 (the accuracy/diversity trade-off curve; first seed)
    tradeoff: list[dict[str, float]] = field(default_factory=list)
    #: with ``[evaluation] context``: each context value's lists and mean metrics (first seed)
    by_context: dict[str, dict[str, float]] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    cold_std: dict[str, dict[str, float]] = field(default_factory=dict)
    #: one record per (seed, scenario): metrics, the chosen hyper-parameters, validation score, seconds
    runs: list[dict[str, Any]] = field(default_factory=list)
    #: scenario → metric → paired comparison with the baseline (see :func:`~.stats.paired`)
    paired: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    per_user: dict[tuple[str, str], list[np.ndarray]] = field(default_factory=dict, repr=False)
    #: with ``[evaluation] labels`` and ``context``: impression metrics per context value (mean, std over seeds)
    impressions: dict[str, dict[str, float]] = field(default_factory=dict)
    impressions_std: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class ExperimentResult:
    name: str
    dataset: dict[str, Any]
    split: dict[str, Any]
    rows: list[ModelResult]
    config: dict[str, Any]
    environment: dict[str, Any]
    seeds: list[int] = field(default_factory=list)
    baseline: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "dataset": self.dataset, "split": self.split, "config": self.config,
            "environment": self.environment, "seeds": self.seeds, "baseline": self.baseline,
            "models": [{k: v for k, v in r.__dict__.items() if k not in ("fitted", "per_user")} for r in self.rows],
        }


def environment() -> dict[str, Any]:
    import numba
    import scipy
    return {"mosaicrec": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "numba": numba.__version__, "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count()}


#: metrics compared with the baseline, user by user
PAIRED_METRICS = ("ndcg@10", "recall@20")


def run_experiment(dataset: Dataset, split_config: SplitConfig, models: list[ModelSpec],
                   eval_config: EvaluationConfig | None = None, *, name: str = "experiment",
                   config: dict[str, Any] | None = None, console: Console | None = None,
                   keep_models: bool = False, content: ItemContent | None = None,
                   cold_start: ColdStartConfig | None = None, seeds: list[int] | None = None,
                   tuning: TuningConfig | None = None, baseline: str | None = None,
                   on_run: Callable[[str, dict[str, Any]], None] | None = None) -> ExperimentResult:
    """Run one experiment and return its results (reports are written by :mod:`.report`).

    ``content`` goes to every model's ``fit`` (content models need it); ``cold_start`` adds the new-item
    and new-user scenarios; ``seeds`` repeats everything (split, tuning, training) once per seed (default:
    the split's seed); ``tuning`` chooses hyper-parameters on validation; ``baseline`` (a model label)
    gets every other model a paired comparison; ``on_run(label, record)`` hears each (seed, model, scenario)
    record as it is made, so a long run that is stopped keeps what it finished."""
    eval_config = eval_config or EvaluationConfig()
    console = console or Console(stderr=True)
    seeds = list(seeds) if seeds else [split_config.seed]
    labels = [m.display for m in models]
    if baseline is not None and baseline not in labels:
        raise ConfigError(f"baseline {baseline!r} is not one of the models ({', '.join(labels)})")
    check_starts(models)
    if tuning is not None:
        try:
            tuning.check_metric(eval_config.metrics, eval_config.ks)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    has_genres = "genres" in _attribute_names(dataset)
    item_vectors = dataset.item_attribute_matrix("genres") if has_genres else dataset.item_attribute_matrix()
    cold_start = cold_start or ColdStartConfig()
    profiles = _profile_fn(dataset, cold_start)
    rows = {m.display: ModelResult(m.display, m.name, {}, 0.0, 0.0, 0.0, {}) for m in models}
    split_info: dict[str, Any] = {}

    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task("models", total=len(models) * len(seeds))
        for s_i, seed in enumerate(seeds):
            sc_cfg = split_config.model_copy(update={"seed": seed})
            tasks = _tasks(dataset, sc_cfg, cold_start, content, profiles)
            popularity = item_popularity(tasks[0].train_explicit)
            if s_i == 0:
                split_info = _split_info(sc_cfg, tasks, item_vectors, has_genres)
            validations: dict[str, Task] = {}
            fitted: dict[tuple[str, str], dict[str, Any]] = {}  # (label, scenario) → params fitted this seed
            for spec in models:
                row = rows[spec.display]
                t_spec = time.perf_counter()
                for task in tasks:
                    progress.update(bar, description=f"seed {seed}: {spec.display}, {task.name}")
                    params = seeded(spec.name, start_params(spec, fitted.get((spec.start_from, task.name), {})), seed)
                    tuned = None
                    space = (tuning.space_for(spec.display, spec.name, task.name, MODELS[spec.name].Config.model_fields)
                             if tuning is not None else None)
                    if space:
                        if task.name not in validations:
                            validations[task.name] = _validation_task(task, sc_cfg, cold_start, profiles)
                        val = validations[task.name]
                        t0 = time.perf_counter()
                        tuned = tune(space, _objective(spec.name, params, val, content, eval_config, tuning.metric,
                                                       popularity, item_vectors), tuning, seed=seed,
                                     epoch_trained="epochs" in MODELS[spec.name].Config.model_fields)
                        tune_s = time.perf_counter() - t0
                        params = apply(params, tuned.best_params)
                    # Peak memory is reported for the first seed's warm fit only, and tracemalloc costs
                    # time: torch models run 3-4× slower under it (measured), and it cannot see torch's own
                    # allocator, so they are not traced at all (their peak reads nan).
                    trace = s_i == 0 and task.name == WARM and not MODELS[spec.name].runs_torch(params)
                    if trace:
                        tracemalloc.start()
                    t0 = time.perf_counter()
                    model = _fit(spec.name, params, task, content)
                    fit_s = time.perf_counter() - t0
                    fitted[(spec.display, task.name)] = model.config.model_dump()
                    peak = float("nan")
                    if trace:
                        peak = tracemalloc.get_traced_memory()[1] / 2**20
                        tracemalloc.stop()
                    t0 = time.perf_counter()
                    result = _score(model, task, eval_config, popularity, item_vectors,
                                    eval_config.context if task.name == WARM else None)
                    eval_s = time.perf_counter() - t0
                    record: dict[str, Any] = {"seed": seed, "scenario": task.name,
                                              "metrics": {} if result is None else dict(result.metrics),
                                              "fit_seconds": round(fit_s, 3)}
                    if getattr(model, "best_epoch_", None) is not None:  # -1: the start was kept
                        record["best_epoch"] = int(model.best_epoch_)
                    if tuned is not None:
                        record.update(chosen=tuned.best_params, validation=tuned.best_value,
                                      trials=len(tuned.trials), tuning_seconds=round(tune_s, 2),
                                      pruned=sum(t["state"] == "pruned" for t in tuned.trials))
                    if task.name == WARM and eval_config.labels:
                        overall, by_value = impression_metrics(model, task.train_explicit, task.test_explicit,
                                                               eval_config.labels, eval_config.context)
                        record["metrics"].update(overall)
                        record["impressions_by_context"] = by_value
                    if result is not None:
                        if task.name == WARM:
                            if model.predicts_ratings and dataset.rating_scale is not None:
                                record["metrics"].update(evaluate_ratings(model, task.test_explicit))
                            split_info.setdefault("users_evaluated", int(len(np.unique(result.users))))
                            if eval_config.context:
                                split_info.setdefault("lists_evaluated", int(len(result.users)))
                        for m in PAIRED_METRICS:
                            if m in result.per_user:
                                row.per_user.setdefault((task.name, m), []).append(result.per_user[m])
                    row.runs.append(record)
                    if on_run is not None:
                        on_run(spec.display, record)
                    if task.name == WARM and result is not None:
                        for slice_name, sliced in _slices(model, task, eval_config, popularity, item_vectors,
                                                          result):
                            row.runs.append({"seed": seed, "scenario": slice_name, "metrics": sliced[0]})
                            if on_run is not None:
                                on_run(spec.display, row.runs[-1])
                            for m in PAIRED_METRICS:
                                if m in sliced[1]:
                                    row.per_user.setdefault((slice_name, m), []).append(sliced[1][m])
                    if task.name == WARM and s_i == 0:
                        row.params = model.config.model_dump()
                        row.fit_seconds, row.eval_seconds, row.peak_memory_mb = fit_s, eval_s, peak
                        if keep_models:
                            row.fitted = model
                        if result is not None:
                            row.by_context = result.by_context
                        if eval_config.mmr_lambdas and content is not None:
                            row.tradeoff = _tradeoff(model, task, content, eval_config, item_vectors)
                progress.advance(bar)
                if not console.is_terminal:  # a log (CI, nohup): one line per model instead of a redrawn bar
                    console.print(f"seed {seed}: {spec.display} done in {time.perf_counter() - t_spec:.0f} s "
                                  f"({int(progress.tasks[0].completed)}/{len(models) * len(seeds)})")
    for row in rows.values():
        _aggregate(row)
    if baseline is not None:
        base = rows[baseline]
        for row in rows.values():
            if row is base:
                continue
            for (task_name, metric), values in row.per_user.items():
                other = base.per_user.get((task_name, metric))
                if other is not None and len(other) == len(values):
                    row.paired.setdefault(task_name, {})[metric] = paired(values, other)
    split_info["seeds"] = seeds
    if tuning is not None:
        split_info["tuning"] = tuning.model_dump(mode="json")
    return ExperimentResult(name=name, dataset=dataset.summary(), split=split_info, rows=list(rows.values()),
                            config=config or {}, environment=environment(), seeds=seeds, baseline=baseline)


def _aggregate(row: ModelResult) -> None:
    by_task: dict[str, list[dict[str, float]]] = {}
    for r in row.runs:
        by_task.setdefault(r["scenario"], []).append(r["metrics"])
    by_value: dict[str, list[dict[str, float]]] = {}
    for r in row.runs:
        for value, metrics in r.get("impressions_by_context", {}).items():
            by_value.setdefault(value, []).append(metrics)
    for value, runs in by_value.items():
        row.impressions[value], row.impressions_std[value] = mean_std(runs)
    for task_name, runs in by_task.items():
        mean, std = mean_std([r for r in runs if r])
        if task_name == WARM:
            row.metrics, row.std = mean, std
        else:
            row.cold[task_name], row.cold_std[task_name] = mean, std


def _profile_fn(dataset: Dataset, cold_start: ColdStartConfig):
    encoder = None
    if cold_start.profile_encoder:
        from mosaicrec.encoders import create_encoder  # evaluation sits above encoders

        encoder = create_encoder(cold_start.profile_encoder)

    def profiles(history: sp.csr_matrix) -> np.ndarray | None:
        if encoder is None:
            return None
        texts = profile_texts(dataset.users, dataset.interactions.user_ids, dataset.items,
                              dataset.interactions.item_ids, history)
        return encoder.encode([t or "a new user" for t in texts])
    return profiles


def _warm_task(train: Interactions, test: Interactions, threshold: float | None, profiles) -> Task:
    pos = to_implicit(train, threshold)
    return Task(WARM, pos, to_implicit(test, threshold), train.binary, train_explicit=train, test_explicit=test,
                profile_fn=profiles)


def _new_item_task(train: Interactions, test: Interactions, threshold: float | None, profiles) -> Task:
    # Every held-out item is a candidate, whether or not it has a positive test event: ranking only those
    # with one would tell the model which they are.
    pos = to_implicit(train, threshold)
    held = np.unique(test.items)
    return Task("new items", pos, to_implicit(test, threshold), pos.binary, train_explicit=train,
                candidates=held, held_out=int(len(held)), profile_fn=profiles)


def _new_user_task(train: Interactions, support: Interactions, test: Interactions, profiles) -> Task:
    users = np.unique(test.users)
    return Task("new users", train, test, support.binary, users=users, support=support, held_out=int(len(users)),
                profile_fn=profiles)


def _tasks(dataset: Dataset, split_config: SplitConfig, cold: ColdStartConfig, content: ItemContent | None,
           profiles) -> list[Task]:
    """The warm task and each cold-start scenario of one seed."""
    threshold = split_config.rating_threshold
    events = dataset.interactions
    if split_config.positives_first:
        events = to_implicit(events, threshold)
    tasks = [_warm_task(*split(events, split_config), threshold, profiles)]
    if (cold.items or cold.users) and content is None:
        raise ConfigError("cold-start scenarios need item content: add a [content] section")
    events = k_core(dataset.interactions, split_config.min_core)
    if cold.items:  # items are drawn among all items with events, before the rating threshold
        tasks.append(_new_item_task(*cold_item_split(events, cold.items, split_config.seed), threshold, profiles))
    if cold.users:
        tasks.append(_new_user_task(*cold_user_split(to_implicit(events, threshold), cold.users, cold.support,
                                                     split_config.seed), profiles))
    return tasks


def _validation_task(task: Task, split_config: SplitConfig, cold: ColdStartConfig, profiles) -> Task:
    """The same kind of scenario carved out of ``task``'s training part (the test part is not read)."""
    threshold, frac, seed = split_config.rating_threshold, split_config.validation_fraction, split_config.seed
    if task.name == WARM:
        fit, val, _ = validation_split(task.train_explicit, split_config.kind, frac, seed)
        return _warm_task(fit, val, threshold, profiles)
    if task.name == "new items":
        fit, val, _ = validation_split(task.train_explicit, "cold_items", frac, seed)
        return _new_item_task(fit, val, threshold, profiles)
    return _new_user_task(*validation_split(task.train, "cold_users", frac, seed, cold.support), profiles)


def _fit(name: str, params: dict[str, Any], task: Task, content: ItemContent | None) -> BaseRecommender:
    model = create(name, params)
    explicit = ((model.predicts_ratings or model.trains_on_impressions) and task.train_explicit is not None
                and task.name == WARM)
    return model.fit(task.train_explicit if explicit else task.train, content=content,
                     user_profiles=task.profiles("train") if model.uses_profiles else None)


def _score(model: BaseRecommender, task: Task, cfg: EvaluationConfig, popularity: np.ndarray, item_vectors,
           context: str | None = None):
    """Ranking metrics of a fitted model on a task; ``None`` where the model cannot score it."""
    score_fn = None
    if task.support is not None:
        shown = task.shown
        prof = task.profiles("support") if model.uses_profiles else None

        def fold_in(users: np.ndarray) -> np.ndarray:
            return model.score(Query(history=shown.history[users], timestamps=shown.timestamps[users],
                                           profiles=None if prof is None else prof[users]))
        score_fn = fold_in
    try:
        return evaluate_ranking(model, task.test, exclude=task.exclude, config=cfg, item_popularity=popularity,
                                item_vectors=item_vectors, users=task.users, candidates=task.candidates,
                                score_fn=score_fn, context=context)
    except NotSupportedError:
        return None


def _slices(model: BaseRecommender, task: Task, cfg: EvaluationConfig, popularity: np.ndarray, item_vectors,
            result) -> list[tuple[str, tuple[dict[str, float], dict[str, np.ndarray]]]]:
    """The warm metrics on the sparse part: users with few training positives (their rows of the full
    result), and items with few training positives: those items ranked among themselves (the long tail as
    its own catalog, as the new items are; ranked among all items they almost never reach a top 20, and
    every model scores near 0), with the user's test items among them relevant. Returns (name, (mean
    metrics, per-user values))."""
    out = []
    if cfg.sparse_users:
        counts = np.diff(task.train.binary.indptr)
        keep = counts[result.users] <= cfg.sparse_users
        per_user = {k: v[keep] for k, v in result.per_user.items()}
        out.append((f"users ≤{cfg.sparse_users}", ({k: float(v.mean()) if len(v) else 0.0
                                                     for k, v in per_user.items()}, per_user)))
    if cfg.sparse_items:
        counts = np.bincount(task.train.items, minlength=task.train.n_items)
        test = task.test.subset(counts[task.test.items] <= cfg.sparse_items)
        if test.n_events:
            sliced = evaluate_ranking(model, test, exclude=task.exclude, config=cfg, item_popularity=popularity,
                                      item_vectors=item_vectors,
                                      candidates=np.flatnonzero(counts <= cfg.sparse_items))
            out.append((f"items ≤{cfg.sparse_items}", (dict(sliced.metrics), sliced.per_user)))
    return out


def _objective(name: str, base: dict[str, Any], val: Task, content: ItemContent | None, cfg: EvaluationConfig,
               metric: str, popularity: np.ndarray, item_vectors):
    """Validation metric of a model with some hyper-parameters; ``budget`` scales its epochs (pruning)."""
    def objective(params: dict[str, Any], budget: float) -> float:
        full = apply(base, params)
        if budget < 1.0 and "epochs" in MODELS[name].Config.model_fields:
            epochs = full.get("epochs", MODELS[name].Config.model_fields["epochs"].default)
            full["epochs"] = max(1, int(round(epochs * budget)))
        result = _score(_fit(name, full, val, content), val, cfg, popularity, item_vectors)
        return 0.0 if result is None else float(result.metrics[metric])
    return objective


def _tradeoff(model: BaseRecommender, task: Task, content: ItemContent, cfg: EvaluationConfig, item_vectors):
    fused = concat_features(content.align(task.train.item_ids), content.modalities)
    fused /= np.maximum(np.linalg.norm(fused, axis=1, keepdims=True), 1e-12)
    return diversity_tradeoff(model, task.test, exclude=task.exclude, vectors=fused, lambdas=cfg.mmr_lambdas,
                              diversity_vectors=item_vectors)


def _split_info(cfg: SplitConfig, tasks: list[Task], item_vectors, has_genres: bool) -> dict[str, Any]:
    warm = tasks[0]
    info = {**cfg.model_dump(), "train_events": warm.train_explicit.n_events,
            "test_events": warm.test_explicit.n_events, "train_positives": warm.train.n_events,
            "test_positives": warm.test.n_events,
            "diversity_vectors": "training co-occurrence" if item_vectors is None
            else "item genres" if has_genres else "item attributes"}
    info["cold_start"] = {t.name: {"train_events": t.train.n_events, "test_events": t.test.n_events,
                                   "held_out": t.held_out} for t in tasks[1:]}
    return info


def _attribute_names(dataset: Dataset) -> set[str]:
    return {k for attrs in dataset.items["attributes"] for k in (attrs or {})}
