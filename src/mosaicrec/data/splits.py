"""Evaluation splits and preprocessing: per-user random holdout, per-user leave-last-out by time, a global
temporal cut; k-core filtering; explicit→implicit conversion. All seeded and index-preserving (the id maps
of the input are kept, so train and test address the same catalog)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mosaicrec.data.likes import positive
from mosaicrec.data.schema import Dataset, Interactions
from mosaicrec.errors import ConfigError

SplitKind = Literal["random", "leave_last_out", "temporal"]


class SplitConfig(BaseModel):
    """How to split events into train and test (the ``[split]`` section of a config file)."""

    model_config = ConfigDict(extra="forbid")

    kind: SplitKind = "random"
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="random / temporal: share held out")
    seed: int = 42
    min_core: int = Field(0, ge=0, description="k-core filter before splitting (0: off)")
    rating_threshold: float | None = Field(
        None, description="explicit→implicit: events with weight ≥ this are positives (None: all are)")
    positives_first: bool = Field(
        False, description="apply rating_threshold before splitting, so leave-last-out holds out each user's "
        "last positive (an impression log's last engaged video) instead of a last event that may be a skip")
    validation_fraction: float = Field(
        0.2, gt=0.0, lt=1.0, description="share of the training part carved out as validation when "
        "hyper-parameters are tuned (the same kind of split, inside training; the test part is never read)")

    def with_likes_of(self, dataset: Dataset) -> SplitConfig:
        """This split with the dataset's declared like rule as its threshold where it gives none (refused
        where the weights look like ratings and nothing says which are likes)."""
        if self.rating_threshold is not None:
            return self
        return self.model_copy(update={"rating_threshold": dataset.like_threshold()})

    @model_validator(mode="after")
    def _threshold_for_positives(self) -> SplitConfig:
        if self.positives_first and self.rating_threshold is None:
            raise ValueError("positives_first needs a rating_threshold (which events are positives)")
        return self


def random_holdout(x: Interactions, test_fraction: float = 0.2, seed: int = 42
                   ) -> tuple[Interactions, Interactions]:
    """Hold out ``test_fraction`` of each user's events at random (at least one, and at least one kept
    in train); users with a single event stay whole in train."""
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(x.n_events), x.users))  # users grouped, random order within
    users_sorted = x.users[order]
    starts = np.flatnonzero(np.r_[True, users_sorted[1:] != users_sorted[:-1]])
    counts = np.diff(np.r_[starts, x.n_events])
    n_test = np.where(counts >= 2, np.clip(np.round(counts * test_fraction), 1, counts - 1), 0).astype(int)
    rank = np.arange(x.n_events) - np.repeat(starts, counts)
    is_test = np.zeros(x.n_events, dtype=bool)
    is_test[order] = rank < np.repeat(n_test, counts)
    return x.subset(~is_test), x.subset(is_test)


def leave_last_out(x: Interactions, n_last: int = 1) -> tuple[Interactions, Interactions]:
    """Hold out each user's last ``n_last`` events by timestamp (ties broken by event order); users with at
    most ``n_last`` events stay whole in train."""
    order = np.lexsort((np.arange(x.n_events), x.timestamps, x.users))
    users_sorted = x.users[order]
    starts = np.flatnonzero(np.r_[True, users_sorted[1:] != users_sorted[:-1]])
    counts = np.diff(np.r_[starts, x.n_events])
    rank_from_end = np.repeat(starts + counts, counts) - np.arange(x.n_events) - 1
    is_test = np.zeros(x.n_events, dtype=bool)
    is_test[order] = (rank_from_end < n_last) & (np.repeat(counts, counts) > n_last)
    return x.subset(~is_test), x.subset(is_test)


def temporal_split(x: Interactions, test_fraction: float = 0.2) -> tuple[Interactions, Interactions]:
    """One global time cut: the latest ``test_fraction`` of events are test. Test events of users or items
    absent from train stay in test (cold-start slices read them); full-ranking metrics skip users with no
    train history."""
    cut = np.quantile(x.timestamps, 1.0 - test_fraction, method="lower")
    is_test = x.timestamps > cut
    if not is_test.any() or is_test.all():
        raise ConfigError(f"temporal split at t={cut} leaves an empty side; the timestamps may be missing")
    return x.subset(~is_test), x.subset(is_test)


def cold_item_split(x: Interactions, test_fraction: float = 0.2, seed: int = 42
                    ) -> tuple[Interactions, Interactions]:
    """New-item cold start: hold out ``test_fraction`` of the items that have events, with *all* their
    events; those items never appear in train (they stay in the id maps, with no training events)."""
    rng = np.random.default_rng(seed)
    items = np.unique(x.items)
    n_cold = int(round(len(items) * test_fraction))
    if n_cold == 0 or n_cold == len(items):
        raise ConfigError(f"cold-item split of {len(items)} items at {test_fraction} leaves an empty side")
    cold = np.zeros(x.n_items, bool)
    cold[rng.choice(items, n_cold, replace=False)] = True
    is_test = cold[x.items]
    return x.subset(~is_test), x.subset(is_test)


def cold_user_split(x: Interactions, test_fraction: float = 0.2, support: int = 3, seed: int = 42
                    ) -> tuple[Interactions, Interactions, Interactions]:
    """New-user cold start: hold out ``test_fraction`` of the users with more than ``support`` events.
    Returns (train, support, test): a held-out user's first ``support`` events by time are what the model
    is shown at recommendation time (``support=0``: none, profile only), the rest are to be predicted.
    Held-out users have no training events."""
    rng = np.random.default_rng(seed)
    counts = np.bincount(x.users, minlength=x.n_users)
    eligible = np.flatnonzero(counts > support)
    n_cold = int(round(len(eligible) * test_fraction))
    if n_cold == 0 or n_cold == len(np.unique(x.users)):
        raise ConfigError(f"cold-user split of {len(eligible)} users at {test_fraction} leaves an empty side")
    cold = np.zeros(x.n_users, bool)
    cold[rng.choice(eligible, n_cold, replace=False)] = True
    rank = x.positions
    held = cold[x.users]
    return x.subset(~held), x.subset(held & (rank < support)), x.subset(held & (rank >= support))


def validation_split(train: Interactions, kind: str, fraction: float = 0.2, seed: int = 42,
                     support: int = 3) -> tuple[Interactions, Interactions, Interactions | None]:
    """Carve a validation part out of ``train`` with the same kind of split the test part came from, so
    hyper-parameters are chosen without reading the test part: ``random`` / ``leave_last_out`` / ``temporal``
    (warm), ``cold_items`` (pseudo-new items: a share of the training items held out whole) and
    ``cold_users`` (pseudo-new users, shown their first ``support`` events). Returns (fit part, validation
    part, support part — ``cold_users`` only, else ``None``). The seed is offset so the carve differs
    from the test split's own draw."""
    seed = seed + 7919
    if kind == "random":
        fit, val = random_holdout(train, fraction, seed)
    elif kind == "leave_last_out":
        fit, val = leave_last_out(train)
    elif kind == "temporal":
        fit, val = temporal_split(train, fraction)
    elif kind == "cold_items":
        fit, val = cold_item_split(train, fraction, seed)
    elif kind == "cold_users":
        return cold_user_split(train, fraction, support, seed)
    else:
        raise ConfigError(f"unknown validation split {kind!r}")
    return fit, val, None


def k_core(x: Interactions, k: int) -> Interactions:
    """Keep events of users and items that have at least ``k`` events, repeated until stable."""
    if k <= 1:
        return x
    keep = np.ones(x.n_events, dtype=bool)
    while True:
        u_cnt = np.bincount(x.users[keep], minlength=x.n_users)
        i_cnt = np.bincount(x.items[keep], minlength=x.n_items)
        new = keep & (u_cnt[x.users] >= k) & (i_cnt[x.items] >= k)
        if new.sum() == keep.sum():
            return x.subset(keep)
        keep = new


def to_implicit(x: Interactions, threshold: float | None) -> Interactions:
    """Events with weight ≥ ``threshold`` become positives of weight 1; the rest are dropped. Without a
    threshold every event with a weight above 0 is a positive (the one like rule,
    :func:`~mosaicrec.data.likes.positive`) and keeps its weight."""
    if threshold is None:
        keep = positive(x.weights, None)
        return x if keep.all() else x.subset(keep)
    pos = x.weights >= threshold
    return x.subset(pos).with_weights(np.ones(int(pos.sum()), np.float32))


def split(x: Interactions, config: SplitConfig) -> tuple[Interactions, Interactions]:
    """Apply the configured k-core filter and split (the rating threshold is applied by the caller, since
    rating models train on the explicit events)."""
    x = k_core(x, config.min_core)
    if config.kind == "random":
        return random_holdout(x, config.test_fraction, config.seed)
    if config.kind == "leave_last_out":
        return leave_last_out(x)
    return temporal_split(x, config.test_fraction)
