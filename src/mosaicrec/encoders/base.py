"""The encoder protocol and its registry.

An encoder turns one modality of an item into a float32 vector. Its work is split in three steps so that
the encode stage can overlap media I/O with the model and isolate broken files:

* ``decode(ref)``: one item's raw input (a text, or a media file path) → model-ready array. Runs in a
  background thread; raises :class:`MediaError` with the reason when the input is unusable.
* ``collate(decoded)``: a batch of decoded items → the model's batch input (tokenise, stack). Background too.
* ``forward(batch)``: the bare model call → ``(n, dim)`` float32, not yet normalised.

``encode(refs)`` chains them and L2-normalises (the default), for notebook use.

An encoder's ``key`` (``name@version``) names what its vectors mean: the cache keys on it, so anything
that changes the output (weights, input size, a fitted vocabulary) must change the version.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import importlib.util
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mosaicrec.errors import ConfigError, MosaicError
from mosaicrec.registry import Registry

Modality = Literal["text", "image", "audio", "video"]
MODALITIES: tuple[Modality, ...] = ("text", "image", "audio", "video")


class MediaError(MosaicError):
    """One item's input cannot be encoded (corrupt image, unreadable audio, empty text).

    ``kind`` is the short reason the encode summary counts by (``corrupt image``); ``detail`` says which
    file and what the decoder reported."""

    def __init__(self, kind: str, detail: str = "") -> None:
        self.kind, self.detail = kind, detail
        super().__init__(f"{kind}: {detail}" if detail else kind)


class EncoderConfig(BaseModel):
    """Settings every encoder has. Subclasses add their own; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(32, ge=1, le=4096, description="items per model call")
    threads: int | None = Field(None, ge=1, description="model threads [default: all cores]")
    normalize: bool = Field(True, description="L2-normalise each vector")


class Encoder(ABC):
    """Base class of every encoder: see the module docstring for the three steps."""

    name: ClassVar[str]
    modality: ClassVar[Modality]
    version: ClassVar[str] = "1"
    #: the importable modules it needs (checked before loading, so the error names the package to install)
    requires: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: one line for `mosaicrec encoders list`: package, version, licence, what the model is
    description: ClassVar[str] = ""
    config_class: ClassVar[type[EncoderConfig]] = EncoderConfig
    #: config fields that change the vectors (they enter the cache version)
    output_fields: ClassVar[tuple[str, ...]] = ()
    #: the encoder must be fitted on the catalog's inputs before it encodes (e.g. TF-IDF)
    needs_fit: ClassVar[bool] = False

    dim: int

    def __init__(self, config: EncoderConfig | None = None, **params: Any) -> None:
        if config is not None and params:
            raise ConfigError(f"{self.name}: give a config or keyword parameters, not both")
        try:
            self.config = config or self.config_class(**params)
        except ValueError as e:
            raise ConfigError(f"encoder {self.name!r}: {e}") from e
        self._ready = False

    # -- lifecycle ------------------------------------------------------------------------------------
    def setup(self) -> Encoder:
        """Load the weights (once). Called lazily so that listing encoders loads nothing."""
        if not self._ready:
            missing = _missing_packages(type(self))
            if missing:
                raise MosaicError(f"encoder {self.name!r} needs {', '.join(missing)}: pip install them "
                                  "(`make setup` installs everything)")
            os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            with contextlib.redirect_stdout(io.StringIO()):  # packages that print "Loaded weights…"
                self._load()
            self._ready = True
        return self

    def _load(self) -> None:
        """Load weights; set ``self.dim``."""

    def fit(self, refs: Sequence[str]) -> Encoder:
        """Fit on the catalog's inputs (only encoders with ``needs_fit``)."""
        return self

    def _fitted_fingerprint(self) -> str:
        return ""

    @property
    def key(self) -> str:
        """``name@version``: what the cache keys vectors on."""
        parts = {f: getattr(self.config, f) for f in self.output_fields}
        extra = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:8] \
            if parts else ""
        fitted = self._fitted_fingerprint()
        return f"{self.name}@{self.version}" + (f"-{extra}" if extra else "") + (f"-{fitted}" if fitted else "")

    def spec(self) -> dict[str, Any]:
        """What re-creates this encoder in another process (Ray workers)."""
        return {"name": self.name, "params": self.config.model_dump()}

    # -- the three steps --------------------------------------------------------------------------------
    @abstractmethod
    def decode(self, ref: str) -> Any:
        """One item's input → model-ready data; raise :class:`MediaError` when unusable."""

    def collate(self, decoded: list[Any]) -> Any:
        return decoded

    @abstractmethod
    def forward(self, batch: Any) -> np.ndarray:
        """The bare model call on a collated batch: ``(n, dim)`` float32."""

    def encode(self, refs: Sequence[str]) -> np.ndarray:
        """Encode a batch of inputs end to end; raises :class:`MediaError` naming the first bad one."""
        self.setup()
        decoded = []
        for i, ref in enumerate(refs):
            try:
                decoded.append(self.decode(ref))
            except MediaError as e:
                raise MediaError(e.kind, f"input {i} ({_short(ref)}) {e.detail}".strip()) from e
        vectors = [self.forward(self.collate(decoded[s:s + self.config.batch_size]))
                   for s in range(0, len(decoded), self.config.batch_size)]
        out = np.concatenate(vectors) if vectors else np.zeros((0, self.dim), np.float32)
        return l2_normalize(out) if self.config.normalize else out.astype(np.float32, copy=False)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key})"


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def torch_threads(n: int | None) -> int:
    """Threads for a model: the configured number, else every core this process may use."""
    return n or len(os.sched_getaffinity(0))


def _short(ref: str, n: int = 60) -> str:
    ref = str(ref)
    return ref if len(ref) <= n else ref[: n - 1] + "…"


#: registered encoder name → class; plugins add theirs through the ``mosaicrec.encoders`` entry points
ENCODERS: Registry[type[Encoder]] = Registry("encoder", "mosaicrec.encoders", base=Encoder)
DEFAULT_ENCODERS: dict[Modality, str] = {}


def register_encoder(default: bool = False) -> Callable[[type[Encoder]], type[Encoder]]:
    """Class decorator: make an encoder creatable by its ``name`` (the only place the name is spelled);
    ``default=True`` makes it the one used for its modality unless a config says otherwise."""
    def deco(cls: type[Encoder]) -> type[Encoder]:
        ENCODERS.add(cls.name, cls)
        if default:
            DEFAULT_ENCODERS[cls.modality] = cls.name
        return cls
    return deco


def create_encoder(name: str, **params: Any) -> Encoder:
    """An encoder by registered name with its parameters (validated by its config class)."""
    import mosaicrec.encoders  # noqa: F401  (registers the built-in encoders)

    return ENCODERS.require(name)(**params)


def encoder_available(name: str) -> tuple[bool, str]:
    """Whether an encoder's packages are installed here (without loading anything)."""
    missing = _missing_packages(ENCODERS[name])
    return (not missing, f"needs {', '.join(missing)}" if missing else "installed")


def _missing_packages(cls: type[Encoder]) -> list[str]:
    return [pkg for mod, pkg in cls.requires if importlib.util.find_spec(mod) is None]


def media_path(ref: str) -> Path:
    """A media reference as a local path (``file://`` URIs included)."""
    return Path(str(ref).removeprefix("file://"))
