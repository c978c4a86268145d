"""The experiment runner: split, (tune on validation,) train every model, evaluate on the same split, report;
once per seed, with mean ± std over seeds and paired comparisons against a baseline model.

With item content and a ``[cold_start]`` section, each model is also trained and evaluated in the
cold-start scenarios of :mod:`.tasks` (new items, new users). Models that cannot score new users get no
value there.

Rating models (``predicts_ratings``) train on the explicit events and are also scored with RMSE/MAE;
the others train on the positives (weight ≥ ``rating_threshold``). All models are ranked against the same
relevant test items with the same exclusion (every training event of the user), so rows are comparable.

With an ``[ablation]`` section, each content model is also run without each of its modalities, and the
result says what every modality is worth, paired by user (:mod:`.ablation`).

With a ``[tuning]`` section, each model's hyper-parameters are chosen per seed and per scenario on a
validation part carved out of that scenario's training part by the same kind of split (pseudo-new items
and users for the cold scenarios, see :func:`~mosaicrec.data.splits.validation_split`); the model is then
refitted on the whole training part with the chosen values and the test part is scored once.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from mosaicrec import __version__
from mosaicrec.data.content import ItemContent
from mosaicrec.data.schema import Dataset
from mosaicrec.data.splits import SplitConfig
from mosaicrec.errors import ConfigError, NotSupportedError
from mosaicrec.fusion import concat_features
from mosaicrec.evaluation.ablation import AblationConfig, Dropped, ablation_specs, contributions, without
from mosaicrec.evaluation.protocol import (EvaluationConfig, diversity_tradeoff, evaluate_ranking, evaluate_ratings,
                                           item_popularity)
from mosaicrec.evaluation.impressions import impression_metrics
from mosaicrec.evaluation.memory import PeakMemory
from mosaicrec.evaluation.tasks import (WARM, ColdStartConfig, Task, profile_fn, scenario_tasks, split_info,
                                        validation_task)
from mosaicrec.evaluation.stats import mean_std, paired
from mosaicrec.evaluation.tuning import ContentVerdict, TuningConfig, apply, pay_or_leave, set_param, tune
from mosaicrec.models.base import BaseRecommender
from mosaicrec.models.registry import MODELS, ModelSpec, check_starts, create, seeded, start_params
from mosaicrec.models.query import Query

log = logging.getLogger("mosaicrec.evaluation")


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
    #: with ``[ablation]``: each (model, scenario, modality)'s contribution (see :mod:`.ablation`)
    modalities: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "dataset": self.dataset, "split": self.split, "config": self.config,
            "environment": self.environment, "seeds": self.seeds, "baseline": self.baseline,
            "modalities": self.modalities,
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


@dataclass
class _Run:
    """What every (seed, model, scenario) of one experiment shares."""

    dataset: Dataset
    split: SplitConfig
    eval: EvaluationConfig
    content: ItemContent | None
    cold_start: ColdStartConfig
    tuning: TuningConfig | None
    keep_models: bool
    profiles: Any
    item_vectors: Any
    rows: dict[str, ModelResult]
    on_run: Callable[[str, dict[str, Any]], None] | None
    split_info: dict[str, Any] = field(default_factory=dict)
    #: ablated rows (label → the model it was made from and the modality it lacks)
    dropped: dict[str, Dropped] = field(default_factory=dict)

    def content_for(self, label: str) -> ItemContent | None:
        """The content a row's model reads: all of it, less the dropped modality for an ablated row."""
        d = self.dropped.get(label)
        return without(self.content, d.modality) if d is not None and self.content is not None else self.content

    def emit(self, row: ModelResult, record: dict[str, Any]) -> None:
        row.runs.append(record)
        if self.on_run is not None:
            self.on_run(row.label, record)


def run_experiment(dataset: Dataset, split_config: SplitConfig, models: list[ModelSpec],
                   eval_config: EvaluationConfig | None = None, *, name: str = "experiment",
                   config: dict[str, Any] | None = None, console: Console | None = None,
                   keep_models: bool = False, content: ItemContent | None = None,
                   cold_start: ColdStartConfig | None = None, seeds: list[int] | None = None,
                   tuning: TuningConfig | None = None, baseline: str | None = None,
                   on_run: Callable[[str, dict[str, Any]], None] | None = None,
                   ablation: AblationConfig | None = None) -> ExperimentResult:
    """Run one experiment and return its results (reports are written by :mod:`.report`).

    ``content`` goes to every model's ``fit`` (content models need it); ``cold_start`` adds the new-item
    and new-user scenarios; ``seeds`` repeats everything (split, tuning, training) once per seed (default:
    the split's seed); ``tuning`` chooses hyper-parameters on validation; ``baseline`` (a model label)
    gets every other model a paired comparison; ``on_run(label, record)`` hears each (seed, model, scenario)
    record as it is made, so a long run that is stopped keeps what it finished. Where the split gives no
    rating threshold, the dataset's declared like rule decides which events are positives. ``ablation``
    adds each content model without each of its modalities, and the modalities' contributions."""
    eval_config = eval_config or EvaluationConfig()
    extra = ablation_specs(models, content.modalities if content is not None else [], ablation) \
        if ablation is not None else []
    models = list(models) + [spec for spec, _ in extra]
    console = console or Console(stderr=True)
    split_config = split_config.with_likes_of(dataset)
    seeds = list(seeds) if seeds else [split_config.seed]
    _check(models, eval_config, tuning, baseline)
    has_genres = "genres" in _attribute_names(dataset)
    cold_start = cold_start or ColdStartConfig()
    run = _Run(dataset, split_config, eval_config, content, cold_start, tuning, keep_models,
               profile_fn(dataset, cold_start),
               dataset.item_attribute_matrix("genres") if has_genres else dataset.item_attribute_matrix(),
               {m.display: ModelResult(m.display, m.name, {}, 0.0, 0.0, 0.0, {}) for m in models}, on_run,
               dropped={spec.display: d for spec, d in extra})
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task("models", total=len(models) * len(seeds))
        for s_i, seed in enumerate(seeds):
            _run_seed(run, models, seed, s_i == 0, has_genres, progress, bar, console)
    for row in run.rows.values():
        _aggregate(row)
    if baseline is not None:
        _compare(run.rows, baseline)
    run.split_info["seeds"] = seeds
    if tuning is not None:
        run.split_info["tuning"] = tuning.model_dump(mode="json")
    worth = []
    if ablation is not None:
        means = {r.label: {WARM: r.metrics, **r.cold} for r in run.rows.values()}
        worth = contributions({r.label: r.per_user for r in run.rows.values()}, means, run.dropped, ablation.metric)
    return ExperimentResult(name=name, dataset=dataset.summary(), split=run.split_info, rows=list(run.rows.values()),
                            config=config or {}, environment=environment(), seeds=seeds, baseline=baseline,
                            modalities=worth)


def _check(models: list[ModelSpec], eval_config: EvaluationConfig, tuning: TuningConfig | None,
           baseline: str | None) -> None:
    labels = [m.display for m in models]
    if baseline is not None and baseline not in labels:
        raise ConfigError(f"baseline {baseline!r} is not one of the models ({', '.join(labels)})")
    check_starts(models)
    if tuning is not None:
        try:
            tuning.check_metric(eval_config.metrics, eval_config.ks)
        except ValueError as e:
            raise ConfigError(str(e)) from None


def _run_seed(run: _Run, models: list[ModelSpec], seed: int, first: bool, has_genres: bool, progress: Progress,
              bar: Any, console: Console) -> None:
    """Every model in every scenario of one seed."""
    sc_cfg = run.split.model_copy(update={"seed": seed})
    tasks = scenario_tasks(run.dataset, sc_cfg, run.cold_start, run.content, run.profiles)
    popularity = item_popularity(tasks[0].train_explicit)
    if first:
        run.split_info = split_info(sc_cfg, tasks, run.item_vectors, has_genres)
    validations: dict[str, list[Task]] = {}
    fitted: dict[tuple[str, str], dict[str, Any]] = {}  # (label, scenario) → params fitted this seed
    for spec in models:
        t_spec = time.perf_counter()
        for task in tasks:
            progress.update(bar, description=f"seed {seed}: {spec.display}, {task.name}")
            params = seeded(spec.name, start_params(spec, fitted.get((spec.start_from, task.name), {})), seed)
            model = _run_task(run, spec, task, params, sc_cfg, seed, first, popularity, validations)
            fitted[(spec.display, task.name)] = model.config.model_dump()
        progress.advance(bar)
        if not console.is_terminal:  # a log (CI, nohup): one line per model instead of a redrawn bar
            console.print(f"seed {seed}: {spec.display} done in {time.perf_counter() - t_spec:.0f} s "
                          f"({int(progress.tasks[0].completed)}/{int(progress.tasks[0].total or 0)})")


def _run_task(run: _Run, spec: ModelSpec, task: Task, params: dict[str, Any], sc_cfg: SplitConfig, seed: int,
              first: bool, popularity: np.ndarray, validations: dict[str, list[Task]]) -> BaseRecommender:
    """Tune (on validation), fit and score one model in one scenario; record it. Returns the model."""
    row = run.rows[spec.display]
    content = run.content_for(spec.display)
    tuned, tune_s = None, 0.0
    own = run.dropped[spec.display].parent if spec.display in run.dropped else spec.display  # the same space
    space = (run.tuning.space_for(own, spec.name, task.name, MODELS[spec.name].Config.model_fields)
             if run.tuning is not None else None)
    if space:
        if task.name not in validations:
            # a new-item or new-user validation part is a few hundred items or users: the choice is made over
            # several pseudo-new folds so that it does not follow one fold's noise
            folds = 1 if task.name == WARM else run.tuning.cold_folds
            validations[task.name] = [validation_task(task, sc_cfg.model_copy(update={"seed": sc_cfg.seed + 7919 * f}),
                                                      run.cold_start, run.profiles) for f in range(folds)]
        t0 = time.perf_counter()
        objective = _objective(spec.name, params, validations[task.name], content, run.eval, run.tuning.metric,
                               popularity, run.item_vectors)
        tuned = tune(space, objective, run.tuning, seed=seed,
                     epoch_trained="epochs" in MODELS[spec.name].Config.model_fields)
        tuned.fold_scores = getattr(objective, "folds", {}).get(_key(tuned.best_params), [])
        params = apply(params, tuned.best_params)
        params, tuned.content = _pay_or_leave(run, spec.name, params, tuned.best_params, content, objective)
        tune_s = time.perf_counter() - t0
        if tuned.edges:  # the search could not tell whether a value past the end does better
            log.warning("tuning %s (%s, seed %d): %s; widen the range ([tuning.space]) or let the search do it "
                        "([tuning] widen = 2)", spec.display, task.name, seed, "; ".join(tuned.edges.values()))
    # peak memory is measured on the first seed's warm fit (the reported one), by the resident set
    peak = PeakMemory() if first and task.name == WARM else None
    t0 = time.perf_counter()
    with peak or nullcontext():
        model = _fit(spec.name, params, task, content)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = _score(model, task, run.eval, popularity, run.item_vectors, run.eval.context if task.name == WARM else None)
    eval_s = time.perf_counter() - t0
    record = _record(run, row, model, task, result, seed, fit_s, tuned, tune_s)
    run.emit(row, record)
    if task.name == WARM and result is not None:
        for slice_name, sliced in _slices(model, task, run.eval, popularity, run.item_vectors, result):
            run.emit(row, {"seed": seed, "scenario": slice_name, "metrics": sliced[0]})
            for m in PAIRED_METRICS:
                if m in sliced[1]:
                    row.per_user.setdefault((slice_name, m), []).append(sliced[1][m])
    if task.name == WARM and first:
        row.params = model.config.model_dump()
        row.fit_seconds, row.eval_seconds, row.peak_memory_mb = fit_s, eval_s, peak.mb if peak else float("nan")
        if run.keep_models:
            row.fitted = model
        if result is not None:
            row.by_context = result.by_context
        if run.eval.mmr_lambdas and content is not None and spec.display not in run.dropped:
            row.tradeoff = _tradeoff(model, task, content, run.eval, run.item_vectors)
    return model


def _record(run: _Run, row: ModelResult, model: BaseRecommender, task: Task, result, seed: int, fit_s: float,
            tuned, tune_s: float) -> dict[str, Any]:
    """The (seed, scenario) record of a fitted model: metrics, seconds, the tuning's choice."""
    record: dict[str, Any] = {"seed": seed, "scenario": task.name,
                              "metrics": {} if result is None else dict(result.metrics), "fit_seconds": round(fit_s, 3)}
    if getattr(model, "best_epoch_", None) is not None:  # -1: the start was kept
        record["best_epoch"] = int(model.best_epoch_)
    if tuned is not None:
        record.update(chosen=tuned.best_params, validation=tuned.best_value, trials=len(tuned.trials),
                      tuning_seconds=round(tune_s, 2), pruned=sum(t["state"] == "pruned" for t in tuned.trials),
                      edges=tuned.edges, validation_spread=tuned.spread, widened=tuned.widened,
                      validation_folds=tuned.fold_scores, content=[asdict(v) for v in tuned.content])
    if task.name == WARM and run.eval.labels:
        overall, by_value = impression_metrics(model, task.train_explicit, task.test_explicit, run.eval.labels,
                                               run.eval.context)
        record["metrics"].update(overall)
        record["impressions_by_context"] = by_value
    if result is not None:
        if task.name == WARM:
            if model.predicts_ratings and run.dataset.rating_scale is not None:
                record["metrics"].update(evaluate_ratings(model, task.test_explicit))
            run.split_info.setdefault("users_evaluated", int(len(np.unique(result.users))))
            if run.eval.context:
                run.split_info.setdefault("lists_evaluated", int(len(result.users)))
        for m in PAIRED_METRICS:
            if m in result.per_user:
                row.per_user.setdefault((task.name, m), []).append(result.per_user[m])
    return record


def _compare(rows: dict[str, ModelResult], baseline: str) -> None:
    """Every model against the baseline, user by user, per scenario and metric."""
    base = rows[baseline]
    for row in rows.values():
        if row is base:
            continue
        for (task_name, metric), values in row.per_user.items():
            other = base.per_user.get((task_name, metric))
            if other is not None and len(other) == len(values):
                row.paired.setdefault(task_name, {})[metric] = paired(values, other)


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


def _objective(name: str, base: dict[str, Any], folds: list[Task], content: ItemContent | None,
               cfg: EvaluationConfig, metric: str, popularity: np.ndarray, item_vectors):
    """Validation metric of a model with some hyper-parameters, the mean over the validation ``folds`` (each
    value's per-fold scores kept in ``objective.folds``); ``budget`` scales its epochs (pruning)."""
    def objective(params: dict[str, Any], budget: float) -> float:
        full = apply(base, params)
        if budget < 1.0 and "epochs" in MODELS[name].Config.model_fields:
            epochs = full.get("epochs", MODELS[name].Config.model_fields["epochs"].default)
            full["epochs"] = max(1, int(round(epochs * budget)))
        scores = []
        for val in folds:
            result = _score(_fit(name, full, val, content), val, cfg, popularity, item_vectors)
            scores.append(0.0 if result is None else float(result.metrics[metric]))
        if budget >= 1.0:
            objective.folds[_key(params)] = scores
        return float(np.mean(scores))
    objective.folds = {}
    return objective


def _pay_or_leave(run: _Run, name: str, params: dict[str, Any], chosen: dict[str, Any], content: ItemContent | None,
                  objective) -> tuple[dict[str, Any], list[ContentVerdict]]:
    """Tuning's last step for a model that fuses several content sets: each stays only when it improves
    validation beyond its spread across the folds (:func:`~mosaicrec.evaluation.tuning.pay_or_leave`)."""
    if not run.tuning.pay_or_leave or content is None or "fusion" not in MODELS[name].Config.model_fields:
        return params, []
    sets = list((params.get("fusion") or {}).get("modalities") or content.modalities)
    if len(sets) < 2:
        return params, []

    def fold_scores(keep: list[str]) -> list[float]:
        trial = {**chosen, "fusion.modalities": list(keep)}
        mean = objective(trial, 1.0)
        return getattr(objective, "folds", {}).get(_key(trial), [mean])

    kept, verdicts = pay_or_leave(sets, fold_scores)
    if kept != sets:
        log.info("%s: content left out on validation: %s", name, "; ".join(v.sentence() for v in verdicts
                                                                           if not v.kept))
        params = set_param(params, "fusion.modalities", kept)
    return params, verdicts


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def _tradeoff(model: BaseRecommender, task: Task, content: ItemContent, cfg: EvaluationConfig, item_vectors):
    fused = concat_features(content.align(task.train.item_ids), content.modalities)
    fused /= np.maximum(np.linalg.norm(fused, axis=1, keepdims=True), 1e-12)
    return diversity_tradeoff(model, task.test, exclude=task.exclude, vectors=fused, lambdas=cfg.mmr_lambdas,
                              diversity_vectors=item_vectors)


def _attribute_names(dataset: Dataset) -> set[str]:
    return {k for attrs in dataset.items["attributes"] for k in (attrs or {})}
