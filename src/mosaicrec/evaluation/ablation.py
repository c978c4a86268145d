"""What each modality is worth: a drop-one-modality ablation of content models, paired by user.

With an ``[ablation]`` section, every content model of the experiment is run once more per modality it
reads, without that modality (the feature taken out of the content and out of the model's ``fusion``
list), in every seed and scenario, tuned on validation like the full model when ``[tuning]`` is set. A
modality's **contribution** is the full model's metric minus the model's without it, user by user on the
same test users of the same split, pooled over seeds, with a 95% t interval (:func:`~.stats.paired`):
``posters: +0.0002 [−0.004, +0.004]`` says the posters change nothing one can measure.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mosaicrec.data.content import ItemContent
from mosaicrec.evaluation.stats import paired
from mosaicrec.models.registry import MODELS, ModelSpec

#: how a row without a modality is labelled
WITHOUT = " − "


class AblationConfig(BaseModel):
    """The ``[ablation]`` section of an experiment."""

    model_config = ConfigDict(extra="forbid")

    models: list[str] | None = Field(None, description="labels of the content models to ablate "
                                     "[default: every content model]")
    modalities: list[str] | None = Field(None, description="content features to drop one at a time "
                                         "[default: every one the model reads]")
    metric: Literal["ndcg@10", "recall@20"] = Field("ndcg@10", description="the metric contributions are "
                                                    "measured by")


@dataclass(frozen=True)
class Dropped:
    """An ablated row: which model it was made from and which modality it lacks."""

    parent: str
    modality: str


def ablation_specs(models: list[ModelSpec], modalities: list[str], config: AblationConfig
                   ) -> list[tuple[ModelSpec, Dropped]]:
    """The extra model rows of an ablation: each content model once per modality it reads, without it.
    A model reading a single modality has nothing to compare against and gets no rows."""
    out = []
    for spec in models:
        if not MODELS[spec.name].needs_content or (config.models is not None and spec.display not in config.models):
            continue
        fusion = dict(spec.params.get("fusion") or {})
        reads = list(fusion.get("modalities") or modalities)
        for m in reads:
            if config.modalities is not None and m not in config.modalities or len(reads) < 2:
                continue
            params = copy.deepcopy(spec.params)
            if fusion.get("modalities"):
                params["fusion"]["modalities"] = [x for x in reads if x != m]
            if isinstance(params.get("fusion", {}).get("weights"), dict):
                params["fusion"]["weights"].pop(m, None)
            label = f"{spec.display}{WITHOUT}{m}"
            out.append((spec.model_copy(update={"label": label, "params": params}), Dropped(spec.display, m)))
    return out


def without(content: ItemContent, modality: str) -> ItemContent:
    """The content without one feature."""
    keep = [m for m in content.modalities if m != modality]
    return ItemContent(content.item_ids, {m: content.features[m] for m in keep}, {m: content.masks[m] for m in keep},
                       {m: content.sources[m] for m in keep if m in content.sources})


def contributions(per_user: dict[str, dict[tuple[str, str], list[np.ndarray]]], means: dict[str, dict[str, dict]],
                  dropped: dict[str, Dropped], metric: str) -> list[dict[str, Any]]:
    """Each (model, scenario, modality): the full model's mean, the mean without the modality, and the
    paired difference (full − without) with its 95% interval. ``per_user``: label → (scenario, metric) →
    per-seed arrays; ``means``: label → scenario → mean metrics."""
    rows = []
    for label, d in dropped.items():
        full, less = per_user.get(d.parent, {}), per_user.get(label, {})
        for (scenario, m), values in full.items():
            other = less.get((scenario, m))
            if m != metric or other is None or len(other) != len(values):
                continue
            cmp = paired(values, other)
            rows.append({"model": d.parent, "modality": d.modality, "scenario": scenario, "metric": metric,
                         "with": means.get(d.parent, {}).get(scenario, {}).get(metric),
                         "without": means.get(label, {}).get(scenario, {}).get(metric), **cmp})
    return rows


def describe(row: dict[str, Any]) -> str:
    """``posters: +0.0002 [−0.0040, +0.0040]``."""
    return (f"{row['modality']}: {row['diff']:+.4f} [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"
            .replace("-", "−"))
