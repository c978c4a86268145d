"""The multi-task model's settings: the tasks (label columns of the events) and the network, validated
before any training (see :mod:`.multitask` for what each part does)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mosaicrec.models.base import ModelConfig


class TaskSpec(BaseModel):
    """One prediction task: a label column of the events' context."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    column: str | None = Field(None, description="the events' column holding the label (default: name); "
                               "'weight' is the event's weight where no such column exists")
    kind: Literal["binary", "regression"] = "binary"
    weight: float = Field(1.0, ge=0, le=1000, description="fixed loss weight")
    log: bool = Field(False, description="regression: learn log(1 + target)")

    @property
    def label(self) -> str:
        return self.column or self.name


DEFAULT_TASKS = [TaskSpec(name="click"), TaskSpec(name="long_view"), TaskSpec(name="like"),
                 TaskSpec(name="play_time", column="play_s", kind="regression", log=True)]


class MultiTaskConfig(ModelConfig):
    tasks: list[TaskSpec] = Field(default_factory=lambda: [t.model_copy() for t in DEFAULT_TASKS],
                                  min_length=1, max_length=16)
    architecture: Literal["shared-bottom", "mmoe", "ple", "star"] = "mmoe"
    context: str = Field("scenario", description="the request's context column (and STAR's scenario)")
    features: list[str] = Field(default_factory=lambda: ["scenario", "hour", "weekday"], max_length=16,
                                description="context columns used as categorical input features")
    min_events: int = Field(5, ge=1, description="feature values seen fewer times are 'unknown'")
    context_dropout: float = Field(0.1, ge=0, lt=1, description="share of training feature values replaced "
                                   "by 'unknown', so requests with an unknown context are scored well")
    dim: int = Field(32, ge=2, le=512, description="embedding width of users, items and each feature")
    expert_dim: int = Field(64, ge=2, le=2048)
    experts: int = Field(4, ge=1, le=32, description="mmoe: experts; ple: shared experts")
    task_experts: int = Field(1, ge=1, le=8, description="ple: experts of each task")
    scenario_experts: int = Field(0, ge=0, le=8, description="mmoe / ple: experts of each scenario (the "
                                  "`context` feature's values), which every task's gate sees beside the "
                                  "shared ones; 0: none")
    tower_dim: int = Field(32, ge=2, le=1024)
    task_embeddings: int = Field(0, ge=0, le=512, description="width of a user and an item embedding of each "
                                 "task's own, which its tower reads (both and their product) beside the shared "
                                 "part: only that task's loss trains them (0: none)")
    dropout: float = Field(0.1, ge=0, lt=1)
    loss_weighting: Literal["fixed", "uncertainty"] = "fixed"
    attribute: str | None = Field(None, description="content feature whose non-zero entries the item "
                                  "embedding learns to predict (auxiliary task); None: no such task")
    attribute_weight: float = Field(0.1, ge=0, le=100)
    blend: dict[str, float] = Field(default_factory=lambda: {"click": 1.0, "long_view": 1.0, "like": 1.0},
                                    description="ranking score: weight of each head (by task name)")
    epochs: int = Field(20, ge=1, le=1000)
    lr: float = Field(2e-3, gt=0, le=1)
    weight_decay: float = Field(1e-6, ge=0, le=1, description="L2 on every parameter (Adam)")
    batch_size: int = Field(1024, ge=1, le=1_000_000)
    early_stopping: int = Field(2, ge=0, le=100, description="patience in epochs on the held-out latest "
                                "impressions (mean AUC of the binary tasks); 0: train all epochs")
    validation_share: float = Field(0.1, gt=0, lt=1)
    checkpoints: Literal["shared", "per-task"] = Field(
        "shared", description="shared: every head from the one epoch best on the mean validation AUC; "
        "per-task: each head from the epoch best for its own task (see the module)")
    refit: bool = True
    seed: int = 42
    threads: int = Field(0, ge=0, le=256)

    @model_validator(mode="after")
    def _check(self) -> MultiTaskConfig:
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError("task names must be distinct")
        unknown = sorted(set(self.blend) - set(names))
        if unknown:
            raise ValueError(f"blend names {', '.join(unknown)}, which are no tasks ({', '.join(names)})")
        if not any(w > 0 for w in self.blend.values()):
            raise ValueError("blend needs a positive weight on at least one task")
        if self.architecture == "star" and self.context not in self.features:
            raise ValueError(f"architecture 'star' reads the scenario from features; add {self.context!r}")
        if self.scenario_experts:
            if self.architecture not in ("mmoe", "ple"):
                raise ValueError("scenario_experts needs architecture 'mmoe' or 'ple' (their gates weigh them)")
            if self.context not in self.features:
                raise ValueError(f"scenario_experts read the scenario from features; add {self.context!r}")
        return self
