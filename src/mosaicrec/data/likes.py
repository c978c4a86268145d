"""Like rules: how an event's weight becomes a like (a positive), declared with the data.

A dataset says at ingest how its weights are read — a ``threshold`` (weights at or above it are likes), or a
``rating_scale`` (the weights are ratings; the top quarter of the scale are likes unless a threshold is
given) — and the store keeps the rule beside the events. ``train``, ``serve`` and ``evaluate`` read it from
there, so a 1-star rating is never a like because a command forgot a flag. A rule with neither says that
every event with a weight above 0 is a like (clicks, plays, counts).

Where no rule was declared and the weights look like ratings (a few whole or half numbers between 0 and 10,
at least three of them), :func:`like_threshold` refuses to guess and names the flags that decide.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mosaicrec.errors import ConfigError

#: the flags that declare a rule, named in every refusal
HOW = ("declare which weights are likes: `mosaicrec ingest ... --likes 4` (weights ≥ 4) or "
       "`--rating-scale 1,5` (likes: the top quarter of the scale), or `--likes any` (every weight above 0); "
       "or give `mosaicrec train --threshold 4`")


class LikeRuleMissing(ConfigError):
    """The weights look like ratings and nothing says which of them are likes."""


class LikeRule(BaseModel):
    """How weights become likes (the ``likes`` table of a dataset source; kept in the store)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    threshold: float | None = Field(None, description="weights at or above this are likes")
    rating_scale: tuple[float, float] | None = Field(
        None, description="the weights are ratings on this scale (lowest, highest); without a threshold the "
        "top quarter of the scale are likes")

    @model_validator(mode="after")
    def _scale(self) -> LikeRule:
        if self.rating_scale is not None and not self.rating_scale[0] < self.rating_scale[1]:
            raise ValueError(f"rating_scale must be (lowest, highest) with lowest < highest, got {self.rating_scale}")
        return self

    @property
    def effective(self) -> float | None:
        """The threshold in force: the given one, else the top quarter of the rating scale, else ``None``
        (every weight above 0)."""
        if self.threshold is not None:
            return self.threshold
        if self.rating_scale is not None:
            lo, hi = self.rating_scale
            return lo + 0.75 * (hi - lo)
        return None

    def describe(self) -> str:
        t = self.effective
        rule = f"weights ≥ {t:g} are likes" if t is not None else "every weight above 0 is a like"
        scale = self.rating_scale
        return rule + (f" (ratings {scale[0]:g}–{scale[1]:g})" if scale is not None else "")

    @classmethod
    def parse(cls, likes: str | None = None, rating_scale: str | None = None) -> LikeRule | None:
        """The rule of the ``--likes`` (a number, or ``any``) and ``--rating-scale`` (``LOW,HIGH``) flags;
        ``None`` when neither is given."""
        if likes is None and rating_scale is None:
            return None
        threshold = None
        if likes is not None and likes.strip().lower() != "any":
            threshold = _number(likes, "--likes", "a number (weights at or above it are likes) or 'any'")
        scale = None
        if rating_scale is not None:
            parts = rating_scale.replace("–", ",").replace("..", ",").split(",")
            if len(parts) != 2:
                raise ConfigError(f"--rating-scale expects LOW,HIGH (e.g. 1,5), got {rating_scale!r}")
            scale = (_number(parts[0], "--rating-scale", "LOW,HIGH"), _number(parts[1], "--rating-scale", "LOW,HIGH"))
        try:
            return cls(threshold=threshold, rating_scale=scale)
        except ValidationError as e:
            raise ConfigError("--rating-scale: " + e.errors()[0]["msg"].removeprefix("Value error, ")) from None


def _number(text: str, flag: str, expected: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{flag} expects {expected}, got {text!r}") from None
    if not np.isfinite(value):
        raise ConfigError(f"{flag} expects a finite number, got {text!r}")
    return value


def positive(weights: np.ndarray, threshold: float | None) -> np.ndarray:
    """The one rule for what counts as a like: weight ≥ ``threshold``, or weight > 0 without a threshold
    (so a dislike sent with weight 0 is never a like)."""
    weights = np.asarray(weights, dtype=np.float64)
    return weights >= threshold if threshold is not None else weights > 0


def looks_like_ratings(weights: np.ndarray) -> tuple[float, float] | None:
    """``(lowest, highest)`` when the weights look like ratings — whole or half numbers from 0 to 10, at
    least three distinct values — else ``None`` (clicks are all 1, play counts run far past 10)."""
    w = np.asarray(weights, dtype=np.float64)
    if not len(w) or not np.isfinite(w).all():
        return None
    values = np.unique(w)
    if len(values) < 3 or values[0] < 0 or values[-1] > 10 or not np.all(values * 2 == np.round(values * 2)):
        return None
    return float(values[0]), float(values[-1])


def like_threshold(weights: np.ndarray, rule: LikeRule | None, given: float | None = None,
                   where: str = "the events") -> float | None:
    """The threshold to train or evaluate with: ``given`` (a command's flag) first, then the declared
    ``rule``; with neither, ``None`` (every weight above 0), unless the weights look like ratings: then
    :class:`LikeRuleMissing` names the flags that decide."""
    if given is not None:
        return given
    if rule is not None:
        return rule.effective
    seen = looks_like_ratings(weights)
    if seen is not None:
        raise LikeRuleMissing(f"the weights of {where} look like ratings ({seen[0]:g} to {seen[1]:g}) and no like "
                              f"rule was declared, so a {seen[0]:g} would count as a like: {HOW}")
    return None
