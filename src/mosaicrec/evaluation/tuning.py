"""Hyper-parameter search on a validation part carved out of training (the ``[tuning]`` section).

Each tuned model gets a space: a list is a categorical choice (a grid axis), a ``{low, high, log, integer}``
table a range. ``method = "optuna"`` samples it with Optuna's TPE (seeded) for ``trials`` trials and, for
models trained in epochs, prunes: a trial is first trained for a quarter of its epochs and stopped there
when its validation score is below the median of earlier trials at that point (Optuna's ``MedianPruner``).
``method = "grid"`` tries every combination (ranges contribute ``grid_points`` values). The objective is
always a validation metric: the caller passes a function that fits on the validation's fit part and
scores the validation part, so the test part is never read while choosing.

Keys with dots reach nested parameters: ``"fusion.weights.image"`` tunes the weight of the image modality.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class ParamRange(BaseModel):
    """A numeric range: ``{ low = 10, high = 5000, log = true }``; ``integer`` for counts."""

    model_config = ConfigDict(extra="forbid")

    low: float
    high: float
    log: bool = False
    integer: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> ParamRange:
        if not self.low < self.high:
            raise ValueError(f"range needs low < high (got {self.low} .. {self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self

    def grid(self, points: int) -> list[float | int]:
        values = (np.geomspace if self.log else np.linspace)(self.low, self.high, points)
        return sorted({int(round(v)) for v in values}) if self.integer else [float(f"{v:.6g}") for v in values]


Space = dict[str, list[Any] | ParamRange]

#: the space tuned for a model when the config names none (by registered model name)
DEFAULT_SPACES: dict[str, dict[str, Any]] = {
    "ease": {"reg": {"low": 10.0, "high": 5000.0, "log": True}},
    "content-ease": {"reg": {"low": 10.0, "high": 5000.0, "log": True},
                     "content_weight": {"low": 1.0, "high": 300.0, "log": True}},
    "itemknn": {"neighbors": {"low": 10, "high": 400, "log": True, "integer": True}},
    "content-knn": {"neighbors": {"low": 5, "high": 400, "log": True, "integer": True}},
    "als": {"factors": [32, 64, 128], "regularization": {"low": 0.01, "high": 50.0, "log": True},
            "alpha": {"low": 0.5, "high": 40.0, "log": True}},
    "bpr": {"learning_rate": {"low": 0.005, "high": 0.1, "log": True},
            "regularization": {"low": 1e-5, "high": 1e-1, "log": True}},
    "content-map": {"map_reg": {"low": 0.01, "high": 100.0, "log": True},
                    "regularization": {"low": 0.01, "high": 50.0, "log": True},
                    "alpha": {"low": 0.5, "high": 40.0, "log": True}},
    # the content generators of new items: their own training and the ALS they are placed beside
    "dropoutnet": {"lr": {"low": 3e-5, "high": 1e-2, "log": True},
                   "weight_decay": {"low": 1e-6, "high": 1e-1, "log": True}, "pref_dropout": [0.25, 0.5, 0.75, 1.0],
                   "regularization": {"low": 0.01, "high": 50.0, "log": True},
                   "alpha": {"low": 0.5, "high": 40.0, "log": True}},
    "clcrec": {"lr": {"low": 3e-5, "high": 1e-2, "log": True},
               "weight_decay": {"low": 1e-6, "high": 1e-1, "log": True},
               "temperature": {"low": 0.05, "high": 1.0, "log": True}, "item_weight": [0.0, 0.25, 0.5, 0.75],
               "regularization": {"low": 0.01, "high": 50.0, "log": True},
               "alpha": {"low": 0.5, "high": 40.0, "log": True}},
    "aldi": {"lr": {"low": 3e-5, "high": 1e-2, "log": True},
             "weight_decay": {"low": 1e-6, "high": 1e-1, "log": True},
             "distill_weight": {"low": 0.1, "high": 10.0, "log": True},
             "regularization": {"low": 0.01, "high": 50.0, "log": True},
             "alpha": {"low": 0.5, "high": 40.0, "log": True}},
    "hybrid": {"lr": {"low": 2e-4, "high": 1e-2, "log": True}, "reg": {"low": 1e-6, "high": 1e-2, "log": True}},
    "vbpr": {"lr": {"low": 2e-4, "high": 1e-2, "log": True}, "reg": {"low": 1e-6, "high": 1e-2, "log": True}},
    "graph": {"lr": {"low": 2e-4, "high": 1e-2, "log": True}, "reg": {"low": 1e-6, "high": 1e-2, "log": True}},
    "two-tower": {"lr": {"low": 2e-4, "high": 1e-2, "log": True}, "reg": {"low": 1e-6, "high": 1e-2, "log": True},
                  "id_dropout": [0.0, 0.1, 0.3]},
    # the networks' epochs are chosen by their own early stopping on the same validation part
    "sasrec": {"lr": {"low": 3e-4, "high": 5e-3, "log": True}, "dropout": [0.1, 0.2, 0.4], "dim": [32, 64, 128]},
    "multitask": {"lr": {"low": 3e-4, "high": 1e-2, "log": True}, "dropout": [0.0, 0.1, 0.3], "dim": [16, 32, 64],
                  "weight_decay": {"low": 1e-8, "high": 1e-4, "log": True}},
}


#: added to a model's space in one scenario when its config has the parameter (it only acts there)
SCENARIO_SPACES: dict[str, dict[str, Any]] = {
    # the BPR start trains the content part less: new items may be better served from scratch
    "new items": {"init": ["bpr", "random"]},
    "new users": {"history_popularity": {"low": 0.0, "high": 3.0},
                  "popularity_window_days": [0.0, 14.0, 30.0, 60.0, 120.0, 240.0],
                  "onboarding_weight": {"low": 0.0, "high": 3.0},
                  "onboarding_reg": {"low": 10.0, "high": 3000.0, "log": True},
                  "onboarding_events": [3, 5, 10]},
}


#: parameters that act in one scenario only, so they are tuned there only, even where a space names them
#: for every scenario: the new-user prior reads only the histories of users the model was not trained on
SCENARIO_ONLY: dict[str, frozenset[str]] = {"new users": frozenset(SCENARIO_SPACES["new users"])}

#: the same for one model's own parameters: the new-item generators train only where items have no events
#: (with ``warm_content`` 0, their default), so their settings would be noise (and false edges) elsewhere
MODEL_SCENARIO_ONLY: dict[str, dict[str, frozenset[str]]] = {
    name: {"new items": frozenset(DEFAULT_SPACES[name]) - {"regularization", "alpha"}}
    for name in ("dropoutnet", "clcrec", "aldi")}


class TuningConfig(BaseModel):
    """The ``[tuning]`` section: how hyper-parameters are chosen on validation."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["optuna", "grid"] = "optuna"
    trials: int = Field(20, ge=1, le=10_000, description="optuna: trials per model and scenario")
    metric: str = Field("ndcg@10", description="validation metric maximised (name@k, from [evaluation])")
    prune: bool = Field(True, description="optuna: stop weak epoch-trained trials after a quarter of "
                        "their epochs (median rule)")
    grid_points: int = Field(4, ge=2, le=50, description="grid: values taken from each range")
    cold_folds: int = Field(3, ge=1, le=20, description="validation folds (pseudo-new items or users carved "
                            "with different seeds) whose mean score chooses in the new-item and new-user scenarios")
    pay_or_leave: bool = Field(True, description="after the search, a content set stays in a fused model only "
                               "when it improves validation beyond its spread across the folds")
    widen: int = Field(0, ge=0, le=5, description="times a range whose choice sits on its edge is extended past "
                       "it (log ranges ×10, linear by half) and searched again; 0: only flag it")
    models: list[str] | None = Field(None, description="labels (or names) of the models to tune; None: "
                                     "every model with a space (given here or built in)")
    space: dict[str, dict[str, ParamRange | list[Any]]] = Field(
        default_factory=dict, description="model label or name → parameter → list or range")

    def check_metric(self, metrics: list[str], ks: list[int]) -> None:
        """Refuse a tuning metric the evaluation does not measure (``name@k``)."""
        name, _, k = self.metric.partition("@")
        if name not in metrics or not k.isdigit() or int(k) not in ks:
            raise ValueError(f"tuning metric {self.metric!r} is not measured by [evaluation] "
                             f"(metrics {', '.join(metrics)}, ks {ks})")

    def space_for(self, label: str, name: str, scenario: str | None = None,
                  fields: Iterable[str] = ()) -> Space | None:
        """The space of one model (its label first, then its name, then the built-in one, plus the
        scenario's own parameters the model has, e.g. the new-user popularity prior), or ``None`` when it
        is not tuned."""
        if self.models is not None and label not in self.models and name not in self.models:
            return None
        given = self.space.get(label) or self.space.get(name)
        raw = dict(given if given is not None else DEFAULT_SPACES.get(name, {}))
        if given is None:
            raw.update({k: v for k, v in SCENARIO_SPACES.get(scenario or "", {}).items() if k in fields})
        if scenario is not None:  # a parameter that acts in one scenario only costs trials elsewhere
            only = [*SCENARIO_ONLY.items(), *MODEL_SCENARIO_ONLY.get(name, {}).items()]
            raw = {k: v for k, v in raw.items() if all(k not in keys or sc == scenario for sc, keys in only)}
        if not raw:
            return None
        return {k: v if isinstance(v, (list, ParamRange)) else ParamRange(**v) if isinstance(v, dict) else [v]
                for k, v in raw.items()}


@dataclass
class TuningResult:
    """The chosen values, their validation score, every trial (params, score, state), the chosen values that
    sit on an edge of their range or ordered grid (parameter → a sentence), and the spread of the completed
    trials' validation scores (``min``, ``median``, ``max``, ``std``)."""

    best_params: dict[str, Any]
    best_value: float
    trials: list[dict[str, Any]] = field(default_factory=list)
    edges: dict[str, str] = field(default_factory=dict)
    spread: dict[str, float] = field(default_factory=dict)
    widened: int = 0
    fold_scores: list[float] = field(default_factory=list)  # the chosen values' score in each validation fold
    content: list[Any] = field(default_factory=list)  # ContentVerdict of each content set, when judged


#: a continuous choice within this share of its range's span (log span for a log range) of an end is "on
#: the edge": the search could not tell whether a value beyond the end would do better
EDGE_SHARE = 0.05


def edges_of(space: Space, chosen: dict[str, Any], grid_points: int | None = None) -> dict[str, str]:
    """The chosen values that sit on an edge of their range, or at an end of an ordered numeric grid
    (a list of numbers in order); categorical choices have no edge."""
    out = {}
    for k, axis in space.items():
        v = chosen.get(k)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if isinstance(axis, ParamRange):
            lo, hi, x = (np.log(axis.low), np.log(axis.high), np.log(max(v, 1e-300))) if axis.log else \
                (axis.low, axis.high, float(v))
            share = (x - lo) / (hi - lo)
            near = 0.5 / (grid_points - 1) if grid_points else EDGE_SHARE
            side = "low" if share <= near else "high" if share >= 1 - near else None
            where = f"{axis.low:g}..{axis.high:g}"
        else:
            nums = [a for a in axis if isinstance(a, (int, float)) and not isinstance(a, bool)]
            ordered = len(nums) == len(axis) > 2 and (nums == sorted(nums) or nums == sorted(nums, reverse=True))
            side = ("low" if v == min(nums) else "high" if v == max(nums) else None) if ordered else None
            where = f"[{', '.join(f'{a:g}' for a in axis)}]" if ordered else ""
        if side:
            out[k] = f"{k}={v:.4g} is at the {side} edge of {where}"
    return out


def widened(space: Space, edges: dict[str, str]) -> Space:
    """``space`` with each range whose choice sat on an edge extended past that edge: a log range by ×10
    (÷10 below, kept above 0), a linear one by half its span; lists are left as given."""
    out = dict(space)
    for k in edges:
        axis = space[k]
        if not isinstance(axis, ParamRange):
            continue
        high_side = "high edge" in edges[k]
        if axis.log:
            lo, hi = (axis.low, axis.high * 10) if high_side else (axis.low / 10, axis.high)
        else:
            half = (axis.high - axis.low) / 2
            lo, hi = (axis.low, axis.high + half) if high_side else (axis.low - half, axis.high)
        if axis.integer:
            lo, hi = max(1, int(np.floor(lo))) if axis.log else int(np.floor(lo)), int(np.ceil(hi))
        out[k] = axis.model_copy(update={"low": lo, "high": hi})
    return out


def spread_of(trials: list[dict[str, Any]]) -> dict[str, float]:
    values = np.array([t["value"] for t in trials if t.get("state") == "complete" and t.get("value") is not None],
                      dtype=float)
    if not len(values):
        return {}
    return {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max()),
            "std": float(values.std())}


#: objective(params, budget) → validation metric; budget in (0, 1] scales a model's epochs (pruning rungs)
Objective = Callable[[dict[str, Any], float], float]


def set_param(params: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """``params`` with a (dotted) key set, e.g. ``fusion.weights.image``; the input is not changed."""
    out = copy.deepcopy(params)
    node = out
    *path, last = key.split(".")
    for part in path:
        node = node.setdefault(part, {})
    node[last] = value
    return out


def apply(params: dict[str, Any], chosen: dict[str, Any]) -> dict[str, Any]:
    for k, v in chosen.items():
        params = set_param(params, k, v)
    return params


def tune(space: Space, objective: Objective, config: TuningConfig, *, seed: int = 0,
         epoch_trained: bool = False) -> TuningResult:
    """Search ``space`` maximising ``objective``; returns the best values, the trial log, the choices on an
    edge and the scores' spread. With ``config.widen`` a range whose choice sits on its edge is extended past
    it and searched again (at most that many times); the best over every search is kept."""
    result, rounds = None, 0
    while True:
        found = _grid(space, objective, config) if config.method == "grid" else \
            _optuna(space, objective, config, seed + rounds, epoch_trained)
        if result is not None:  # keep every trial; the best over all the searches
            found.trials = result.trials + found.trials
            if result.best_value > found.best_value:
                found.best_params, found.best_value = result.best_params, result.best_value
        result = found
        points = config.grid_points if config.method == "grid" else None
        result.edges = edges_of(space, result.best_params, points)
        widen = {k: v for k, v in result.edges.items() if isinstance(space[k], ParamRange)}
        if not widen or rounds >= config.widen:
            break
        space, rounds = widened(space, widen), rounds + 1
    result.spread, result.widened = spread_of(result.trials), rounds
    return result


def _grid(space: Space, objective: Objective, config: TuningConfig) -> TuningResult:
    axes = {k: v.grid(config.grid_points) if isinstance(v, ParamRange) else list(v) for k, v in space.items()}
    trials = []
    for combo in itertools.product(*axes.values()):
        params = dict(zip(axes, combo))
        trials.append({"params": params, "value": float(objective(params, 1.0)), "state": "complete"})
    best = max(trials, key=lambda t: t["value"])
    return TuningResult(best["params"], best["value"], trials)


def _optuna(space: Space, objective: Objective, config: TuningConfig, seed: int,
            epoch_trained: bool) -> TuningResult:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    prune = config.prune and epoch_trained
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
                                if prune else optuna.pruners.NopPruner())

    def run(trial: optuna.Trial) -> float:
        params = {}
        for k, v in space.items():
            if isinstance(v, ParamRange):
                params[k] = (trial.suggest_int(k, int(v.low), int(v.high), log=v.log) if v.integer
                             else trial.suggest_float(k, v.low, v.high, log=v.log))
            else:
                params[k] = v[trial.suggest_categorical(k, list(range(len(v))))]
        trial.set_user_attr("params", params)
        if prune:
            early = float(objective(params, 0.25))
            trial.report(early, 0)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(objective(params, 1.0))

    study.optimize(run, n_trials=config.trials, catch=())
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise RuntimeError("tuning: no trial completed")
    best = max(done, key=lambda t: t.value)
    trials = [{"params": t.user_attrs.get("params", {}), "value": t.value,
               "state": t.state.name.lower()} for t in study.trials]
    return TuningResult(best.user_attrs["params"], float(best.value), trials)


@dataclass(frozen=True)
class ContentVerdict:
    """What a content set was worth to a tuned model on validation: its mean gain over the folds (the score
    with it minus without it, at the point it was judged), that gain's spread (std over the folds), and
    whether it stayed."""

    modality: str
    gain: float
    spread: float
    folds: int
    kept: bool

    def sentence(self) -> str:
        verb = "stays" if self.kept else "left out"
        return (f"{self.modality}: {verb} (validation gain {self.gain:+.4f} ± {self.spread:.4f} over "
                f"{self.folds} fold{'s' if self.folds > 1 else ''})")


def pay_or_leave(modalities: list[str], fold_scores: Callable[[list[str]], list[float]]
                 ) -> tuple[list[str], list[ContentVerdict]]:
    """Backward elimination of content sets: while more than one is left, each is taken out in turn; the
    one whose gain (score with it − without it, fold by fold) least exceeds its spread across the folds
    leaves when its mean gain does not exceed that spread, and the rest are judged again without it. Returns
    the sets that stay and a verdict for every set. ``fold_scores(sets)``: the validation score of each fold
    with only ``sets``."""
    kept = list(modalities)
    base = np.asarray(fold_scores(kept), float)
    verdicts: dict[str, ContentVerdict] = {}
    while len(kept) > 1:
        judged = {}
        for m in kept:
            without = np.asarray(fold_scores([x for x in kept if x != m]), float)
            gain = base - without
            judged[m] = (float(gain.mean()), float(gain.std()), without)
        for m, (g, sd, _) in judged.items():
            verdicts[m] = ContentVerdict(m, g, sd, len(base), True)
        if all(not (base - w).any() for _, _, w in judged.values()):
            break  # no set changes a score here (a scenario the content does not reach): nothing to judge
        weakest = min(judged, key=lambda m: judged[m][0] - judged[m][1])
        g, sd, without = judged[weakest]
        if g > sd:
            break
        verdicts[weakest] = ContentVerdict(weakest, g, sd, len(base), False)
        kept.remove(weakest)
        base = without
    return kept, [verdicts[m] for m in modalities if m in verdicts]
