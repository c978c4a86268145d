"""The model registry: config names → model classes (built-in ones register with :func:`register`, other
packages through the ``mosaicrec.models`` entry points, see :mod:`mosaicrec.registry`), the model entries
of a config file (:class:`ModelSpec`) and creating, seeding and loading models by name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError

from mosaicrec.errors import ConfigError, MosaicError
from mosaicrec.models.base import BaseRecommender
from mosaicrec.registry import Registry


#: registered model name → class; plugins add theirs through the ``mosaicrec.models`` entry points
MODELS: Registry[type[BaseRecommender]] = Registry("model", "mosaicrec.models", base=BaseRecommender)


def register(name: str) -> Callable[[type[BaseRecommender]], type[BaseRecommender]]:
    """Class decorator: make a model available under ``name`` in config files and the CLI."""
    def deco(cls: type[BaseRecommender]) -> type[BaseRecommender]:
        cls.name = name
        return MODELS.add(name, cls)
    return deco


#: a BPR's setting → the parameter of a model's BPR start that takes it (see ``ModelSpec.start_from``)
START_PARAMS = {"learning_rate": "init_learning_rate", "regularization": "init_regularization",
                "iterations": "init_iterations"}


class ModelSpec(BaseModel):
    """One model to train: a registered ``name``, its ``params``, and an optional ``label`` for tables."""

    model_config = ConfigDict(extra="forbid")

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    label: str | None = None
    start_from: str | None = Field(None, description="label of a 'bpr' model listed earlier: this model's BPR "
                                   "start takes that model's settings as fitted in the same seed and scenario "
                                   "(tuned on validation where it is tuned), so the start it may keep is the "
                                   "tuned BPR and not BPR at its defaults; the start keeps this model's width")

    @model_validator(mode="after")
    def _known(self) -> ModelSpec:
        if self.name not in MODELS:
            raise ValueError(f"unknown model {self.name!r}; available: {', '.join(sorted(MODELS))}")
        if self.start_from is not None:
            fields = MODELS[self.name].Config.model_fields
            if "init_learning_rate" not in fields:
                raise ValueError(f"start_from: model {self.name!r} has no BPR start")
            clash = sorted(set(START_PARAMS.values()) & set(self.params))
            if clash:
                raise ValueError(f"start_from sets {', '.join(clash)}: give either start_from or the values")
        try:
            create(self.name, self.params)  # validates the hyper-parameters now, before any training
        except ConfigError as e:
            raise ValueError(str(e)) from None
        return self

    @property
    def display(self) -> str:
        return self.label or self.name


def check_starts(specs: Sequence[ModelSpec]) -> None:
    """Refuse a ``start_from`` that names no 'bpr' model listed before the model (it is fitted first)."""
    before: dict[str, str] = {}
    for spec in specs:
        if spec.start_from is not None and before.get(spec.start_from) != "bpr":
            raise ConfigError(f"model {spec.display!r}: start_from {spec.start_from!r} must be the label of a "
                              f"'bpr' model listed before it")
        before[spec.display] = spec.name


def start_params(spec: ModelSpec, fitted: dict[str, Any]) -> dict[str, Any]:
    """``spec``'s params with its BPR start set from the params ``fitted`` of the model it starts from."""
    if spec.start_from is None:
        return dict(spec.params)
    return {**spec.params, **{ours: fitted[theirs] for theirs, ours in START_PARAMS.items() if theirs in fitted}}


def seeded(name: str, params: dict[str, Any], seed: int) -> dict[str, Any]:
    """``params`` with ``seed`` added where model ``name`` takes a seed and ``params`` do not fix one (a
    run's seed must reach every seeded model; a seed the params name wins)."""
    if "seed" in MODELS[name].Config.model_fields and "seed" not in params:
        return {**params, "seed": seed}
    return dict(params)


def create(name: str, params: dict[str, Any] | None = None) -> BaseRecommender:
    """Instantiate a registered model, validating its hyper-parameters."""
    cls = MODELS.require(name)
    try:
        return cls(cls.Config(**(params or {})))
    except PydanticValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"model {name!r}, parameter {field!r}: {first['msg']}") from None


def load_model(path: str | Path) -> BaseRecommender:
    """A model saved by :meth:`BaseRecommender.save`, of whichever registered class it names."""
    name = BaseRecommender.saved_name(path)
    if name not in MODELS:
        raise MosaicError(f"{path} holds model {name!r}, which no installed package registers; available: "
                          f"{', '.join(sorted(MODELS))}")
    return MODELS[name].load(path)
