"""``per-context``: one model per context value (e.g. one per app surface), the baseline a scenario-aware
model has to beat on the scenarios that have data of their own.

Any registered model (``base``, with ``params``) is fitted once on all events (the pooled model) and once
on each context value's own events where that value has at least ``min_events``; a request, or an event to
score, goes to its value's model, else to the pooled one. So a small scenario is never left without a
model, and a large one gets a model that never saw the others.

``start = "pooled"`` starts each value's model from the pooled one instead and fine-tunes it on that value's
events (a base with ``fine_tune``, such as ``multitask``): shared knowledge plus a part of each scenario's
own. The base's early stopping also scores the start, so a scenario whose own events do not improve on the
pooled model (on its latest events) keeps it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pydantic import Field

from mosaicrec.data.schema import Interactions
from mosaicrec.errors import ConfigError
from mosaicrec.models.base import BaseRecommender, ModelConfig
from mosaicrec.models.registry import MODELS, create, register, seeded
from mosaicrec.models.query import Query


class PerContextConfig(ModelConfig):
    base: str = Field("multitask", description="the registered model fitted per context value")
    params: dict[str, Any] = Field(default_factory=dict, description="the base model's parameters")
    context: str = Field("scenario", description="the event-context column that picks the model")
    min_events: int = Field(5000, ge=1, description="a value with fewer training events is served by the "
                            "pooled model")
    seed: int = Field(42, description="passed to the base model where it takes one and params do not set it")
    start: Literal["scratch", "pooled"] = Field("scratch", description="each value's model trained from "
                                                "scratch, or the pooled model fine-tuned on the value's events")


@register("per-context")
class PerContext(BaseRecommender):
    """A pooled model plus one model per context value with enough events (see the module)."""

    Config = PerContextConfig
    uses_context = True

    def __init__(self, config: PerContextConfig | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        if self.config.base not in MODELS or self.config.base == self.name:
            raise ConfigError(f"per-context: base {self.config.base!r} is no model to fit per context")
        create(self.config.base, self.config.params)  # the base's parameters are checked now
        if self.config.start == "pooled" and not hasattr(MODELS[self.config.base], "fine_tune"):
            raise ConfigError(f"per-context: start 'pooled' fine-tunes the pooled model, and base "
                              f"{self.config.base!r} cannot be fine-tuned (multitask can)")

    @classmethod
    def runs_torch(cls, params: dict[str, Any]) -> bool:
        base = MODELS.get(params.get("base", cls.Config.model_fields["base"].default))
        return base is not None and base.runs_torch(params.get("params", {}))

    @property
    def trains_on_impressions(self) -> bool:  # type: ignore[override]
        return MODELS[self.config.base].trains_on_impressions

    def _base_params(self) -> dict[str, Any]:
        """The base's parameters, with this model's seed unless they name one (a run's seeds must reach it)."""
        return seeded(self.config.base, self.config.params, self.config.seed)

    def _fit(self, train: Interactions) -> None:
        cfg = self.config
        content = self.content_
        params = self._base_params()
        self.pooled_ = create(cfg.base, params).fit(train, content=content)
        raw = np.asarray(train.context[cfg.context]).astype(str)
        values, counts = np.unique(raw, return_counts=True)
        keep = (counts >= cfg.min_events) & (values != "")
        self.contexts_ = values[keep].astype(object)
        if cfg.start == "pooled":
            self.models_ = [self.pooled_.fine_tune(train.subset(raw == v)) for v in self.contexts_]
        else:
            self.models_ = [create(cfg.base, params).fit(train.subset(raw == v), content=content)
                            for v in self.contexts_]

    def _route(self, values: np.ndarray) -> list[tuple[BaseRecommender, np.ndarray, str | None]]:
        """(model, row indices, context value) for each group of rows."""
        out = []
        codes = self.context_codes(list(values), len(values))
        for code in np.unique(codes):
            rows = np.flatnonzero(codes == code)
            model = self.pooled_ if code == 0 else self.models_[code - 1]
            out.append((model, rows, None if code == 0 else str(self.contexts_[code - 1])))
        return out

    def _values(self, query: Query) -> np.ndarray:
        ctx = query.context
        if isinstance(ctx, Mapping):
            ctx = ctx.get(self.config.context)
        if ctx is None:
            return np.full(len(query), "", object)
        return np.full(len(query), ctx, object) if isinstance(ctx, str) else np.asarray(list(ctx), object)

    def _scores(self, query: Query) -> np.ndarray:
        values = self._values(query)
        out = np.zeros((len(query), self._require_fitted().shape[1]), np.float32)
        for model, rows, _ in self._route(values):
            part = Query(users=None if query.new_users else query.users[rows],
                         history=query.history[rows] if query.new_users else None,
                         timestamps=None if query.timestamps is None else query.timestamps[rows],
                         profiles=None if query.profiles is None else query.profiles[rows],
                         context=[str(v) for v in values[rows]], exclude_seen=False)
            out[rows] = model.score(part)
        return out

    @property
    def heads(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.pooled_.heads

    def _pair_scores(self, query: Query, block: int = 1024) -> np.ndarray:
        """Each pair scored by its context's model (the pooled one for contexts never seen)."""
        values = self._values(query)
        out = np.zeros(len(query), np.float32)
        for model, rows, _ in self._route(values):
            context = ({k: _take(v, rows) for k, v in query.context.items()}
                       if isinstance(query.context, Mapping) else [str(v) for v in values[rows]])
            out[rows] = model.score(Query(users=query.users[rows], items=query.items[rows], context=context,
                                          head=query.head))
        return out

    def _state(self) -> dict[str, np.ndarray]:
        state = {"contexts": self.contexts_.astype(str)}
        for n, model in enumerate([self.pooled_, *self.models_]):
            state.update({f"{n}/{k}": v for k, v in model._state().items()})
        return state

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.contexts_ = state["contexts"].astype(object)
        models = []
        for n in range(len(self.contexts_) + 1):
            model = create(self.config.base, self._base_params())
            model._seen, model.user_ids, model.item_ids = self._seen, self.user_ids, self.item_ids
            prefix = f"{n}/"
            model._set_state({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
            models.append(model)
        self.pooled_, self.models_ = models[0], models[1:]


def _take(values: Any, rows: np.ndarray) -> Any:
    return values if values is None or isinstance(values, str) else np.asarray(values, dtype=object)[rows]
