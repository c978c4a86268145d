"""Configuration files: one TOML file reproduces a run (dataset, split, models with hyper-parameters,
metrics, seed). Each section's model lives with its stage; this module assembles them and reads files.

Example (``configs/demo.toml``)::

    seed = 42
    [dataset]
    name = "movielens-100k"
    [split]
    kind = "random"
    test_fraction = 0.2
    rating_threshold = 4
    [[models]]
    name = "ease"
    params = { reg = 300 }
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError

from mosaicrec.data.datasets import DATASETS, DatasetSource
from mosaicrec.data.splits import SplitConfig
from mosaicrec.errors import ConfigError
from mosaicrec.encoders.stage import ContentConfig
from mosaicrec.evaluation.ablation import AblationConfig
from mosaicrec.evaluation.protocol import EvaluationConfig
from mosaicrec.evaluation.runner import ColdStartConfig
from mosaicrec.evaluation.transfer import TransferConfig
from mosaicrec.evaluation.tuning import TuningConfig
from mosaicrec.models.registry import MODELS, ModelSpec, check_starts


class DatasetConfig(BaseModel):
    """A built-in dataset by ``name``, or a ``source`` with files and column mappings."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    source: DatasetSource | None = None
    store: str | None = Field(None, description="ingest into this DuckDB file and read back from it")

    @model_validator(mode="after")
    def _one_of(self) -> DatasetConfig:
        if (self.name is None) == (self.source is None):
            raise ValueError("give either name (a built-in dataset) or source (your files)")
        if self.name is not None and self.name not in DATASETS:
            raise ValueError(f"unknown dataset {self.name!r}; built-in: {', '.join(sorted(DATASETS))}")
        return self

    def label(self) -> str:
        return self.name or self.source.name  # type: ignore[union-attr]


class ExperimentConfig(BaseModel):
    """A whole offline experiment."""

    model_config = ConfigDict(extra="forbid")

    name: str = "experiment"
    seed: int = 42
    seeds: list[int] | None = Field(None, description="run the whole experiment once per seed (split, "
                                    "tuning, training) and report mean ± std; None: [seed]")
    baseline: str | None = Field(None, description="a model label: every other model is compared with it "
                                 "user by user (paired t-test and sign test)")
    tuning: TuningConfig | None = Field(None, description="choose hyper-parameters on validation")
    dataset: DatasetConfig
    split: SplitConfig = Field(default_factory=SplitConfig)
    models: list[ModelSpec]
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    content: ContentConfig | None = Field(None, description="item content for content models")
    cold_start: ColdStartConfig = Field(default_factory=ColdStartConfig)
    ablation: AblationConfig | None = Field(None, description="what each modality is worth: every content model "
                                            "also runs without each of its modalities, compared user by user")
    transfer: TransferConfig | None = Field(None, description="a transfer experiment instead of the usual one: "
                                            "pre-train on one scenario and fine-tune on others, or train on one "
                                            "catalog and score another (mosaicrec.evaluation.transfer)")
    output_dir: str = "runs"

    @model_validator(mode="after")
    def _seed_everywhere(self) -> ExperimentConfig:
        # One seed reproduces the run: it reaches the split, and the runner gives each run's seed to every
        # seeded model whose params do not fix one.
        if "seed" not in self.split.model_fields_set:
            self.split = self.split.model_copy(update={"seed": self.seed})
        if self.seeds is not None and not self.seeds:
            raise ValueError("seeds lists no seed")
        labels = [m.display for m in self.models]
        if len(set(labels)) != len(labels):
            raise ValueError("two models share a label: give each a distinct label")
        try:
            check_starts(self.models)
        except ConfigError as e:
            raise ValueError(str(e)) from None
        if self.baseline is not None and self.baseline not in labels:
            raise ValueError(f"baseline {self.baseline!r} is not a model label ({', '.join(labels)})")
        if self.tuning is not None:
            self.tuning.check_metric(self.evaluation.metrics, self.evaluation.ks)
            unknown = [k for k in self.tuning.space if k not in labels and k not in MODELS]
            if unknown:
                raise ValueError(f"tuning space for {unknown[0]!r}, which is no model label or name")
        for spec in self.models:
            if MODELS[spec.name].needs_content and self.content is None:
                raise ValueError(f"model {spec.display!r} reads item content: add a [content] section")
        if (self.cold_start.items or self.cold_start.users) and self.content is None:
            raise ValueError("cold_start needs item content: add a [content] section")
        if self.ablation is not None:
            self._check_ablation(labels)
        if self.transfer is not None:
            if self.tuning is not None or self.cold_start.items or self.cold_start.users:
                raise ValueError("a [transfer] experiment takes each model's params as given and has its own "
                                 "scenarios: drop [tuning] and [cold_start]")
            self.transfer.check_models(self.models)
        return self


    def _check_ablation(self, labels: list[str]) -> None:
        ab = self.ablation
        if self.content is None:
            raise ValueError("[ablation] drops content modalities: add a [content] section")
        if self.transfer is not None:
            raise ValueError("[ablation] and [transfer] are separate experiments: run them apart")
        content_models = [m.display for m in self.models if MODELS[m.name].needs_content]
        if not content_models:
            raise ValueError("[ablation] needs a content model (e.g. content-map) among the models")
        for label in ab.models or []:
            if label not in labels:
                raise ValueError(f"[ablation] models: {label!r} is not a model label ({', '.join(labels)})")
            if label not in content_models:
                raise ValueError(f"[ablation] models: {label!r} reads no content; content models: "
                                 f"{', '.join(content_models)}")
        features = set(self.content.encoders) | set(self.content.kg)
        for m in ab.modalities or []:
            if m not in features and not any(m.startswith(f + "_") for f in features):  # a video's parts
                raise ValueError(f"[ablation] modalities: {m!r} is no content feature ({', '.join(sorted(features))})")
        k = int(ab.metric.split("@")[1])
        if k not in self.evaluation.ks:
            raise ValueError(f"[ablation] metric {ab.metric} needs {k} in [evaluation] ks ({self.evaluation.ks})")


def with_ablation(cfg: ExperimentConfig) -> ExperimentConfig:
    """The experiment with an ``[ablation]`` section (its defaults) when it has none, checked as a file's."""
    if cfg.ablation is not None:
        return cfg
    try:
        return ExperimentConfig.model_validate({**cfg.model_dump(exclude_unset=True), "ablation": {}})
    except PydanticValidationError as e:
        raise ConfigError(f"--ablation: {e.errors()[0]['msg'].removeprefix('Value error, ')}") from None


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate a TOML experiment file; errors name the file and the offending key."""
    path = Path(path)
    return parse_config(_read_toml(path, "config file"), str(path))


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None


def load_source_file(path: str | Path) -> DatasetSource:
    """Read a TOML file describing a dataset's files and column mappings (a :class:`DatasetSource`).
    Relative file paths resolve against the TOML file's folder."""
    path = Path(path)
    data = _read_toml(path, "source file")
    for key in ("events", "items", "users"):
        if isinstance(data.get(key), str) and not Path(data[key]).is_absolute():
            data[key] = str(path.parent / data[key])
    try:
        return DatasetSource.model_validate(data)
    except PydanticValidationError as e:
        raise ConfigError(_first_error(str(path), e)) from None


DEMO_CONFIG = Path(__file__).parent / "configs" / "demo.toml"
MULTIMODAL_CONFIG = Path(__file__).parent / "configs" / "multimodal.toml"


def demo_config(dataset: str | None = None) -> ExperimentConfig:
    """The demo experiment, on ``dataset`` if given (default: the config's ``movielens-100k``)."""
    data = tomllib.loads(DEMO_CONFIG.read_text())
    if dataset:
        data["dataset"] = {"name": dataset}
    return parse_config(data, str(DEMO_CONFIG))


def parse_config(data: dict[str, Any], where: str = "config") -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(data)
    except PydanticValidationError as e:
        raise ConfigError(_first_error(where, e)) from None


def _first_error(where: str, e: PydanticValidationError) -> str:
    first = e.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    return f"{where}: {key}: {first['msg'].removeprefix('Value error, ')}"
