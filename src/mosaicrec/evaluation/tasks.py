"""The scenarios of an experiment: the warm split and the cold-start ones (new items, new users), each a
:class:`Task` saying what models fit on, what they are scored against and how; and the validation part
carved out of a task's training part by the same kind of split, for tuning.

With item content and a ``[cold_start]`` section, each model is also trained and evaluated in two
cold-start scenarios: **new items** (a share of items held out with all their events; they are ranked
among themselves, since no model has seen them) and **new users** (a share of users held out; each is shown
to the model only through their first ``support`` events and, optionally, a profile embedding, and the rest
of their events are predicted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from mosaicrec.data.content import ItemContent, profile_texts
from mosaicrec.data.schema import Dataset, Interactions
from mosaicrec.data.splits import (SplitConfig, cold_item_split, cold_user_split, k_core, split, to_implicit,
                                   validation_split)
from mosaicrec.errors import ConfigError
from mosaicrec.models.query import Query


class ColdStartConfig(BaseModel):
    """Cold-start scenarios run next to the warm split (the ``[cold_start]`` section of a config)."""

    model_config = ConfigDict(extra="forbid")

    items: float = Field(0.0, ge=0.0, lt=1.0, description="share of items held out whole (0: no new-item run)")
    users: float = Field(0.0, ge=0.0, lt=1.0, description="share of users held out whole (0: no new-user run)")
    support: int = Field(3, ge=0, description="events of a new user the model is shown (their first by time)")
    profile_encoder: str | None = Field(None, description="text encoder embedding user profiles "
                                        "(attributes + titles of their items), e.g. minilm; None: no profiles")


WARM = "warm"


@dataclass
class Task:
    """One scenario of one seed: what models fit on, what they are scored against, and how."""

    name: str
    train: Interactions                      # positives the models fit on
    test: Interactions                       # relevant (positive) test events
    exclude: sp.csr_matrix                   # items never counted for a user (what they were shown)
    train_explicit: Interactions | None = None  # the explicit events (rating models; validation carves)
    test_explicit: Interactions | None = None
    candidates: np.ndarray | None = None     # new items: the held-out items, ranked among themselves
    users: np.ndarray | None = None          # new users: the held-out users
    support: Interactions | None = None      # new users: the events they are shown by
    held_out: int = 0
    #: history → profile embeddings (``None`` without a profile encoder); computed on first use, since
    #: encoding every user's profile text costs seconds and most models never read it
    profile_fn: Any = None
    _profiles: dict[str, np.ndarray | None] = field(default_factory=dict, repr=False)

    @cached_property
    def shown(self) -> Query:
        """New users: the support events as a query of every user, with times (a time-aware prior reads
        them); built once per task, not once per model."""
        return Query.of_events(self.support)

    def profiles(self, part: str) -> np.ndarray | None:
        """Profile embeddings of every user from the ``"train"`` or ``"support"`` events."""
        if self.profile_fn is None:
            return None
        if part not in self._profiles:
            events = self.train if part == "train" else self.support
            self._profiles[part] = self.profile_fn(events.binary)
        return self._profiles[part]


def profile_fn(dataset: Dataset, cold_start: ColdStartConfig):
    encoder = None
    if cold_start.profile_encoder:
        from mosaicrec.encoders import create_encoder  # evaluation sits above encoders

        encoder = create_encoder(cold_start.profile_encoder)

    def profiles(history: sp.csr_matrix) -> np.ndarray | None:
        if encoder is None:
            return None
        texts = profile_texts(dataset.users, dataset.interactions.user_ids, dataset.items,
                              dataset.interactions.item_ids, history)
        return encoder.encode([t or "a new user" for t in texts])
    return profiles


def warm_task(train: Interactions, test: Interactions, threshold: float | None, profiles) -> Task:
    pos = to_implicit(train, threshold)
    return Task(WARM, pos, to_implicit(test, threshold), train.binary, train_explicit=train, test_explicit=test,
                profile_fn=profiles)


def new_item_task(train: Interactions, test: Interactions, threshold: float | None, profiles) -> Task:
    # Every held-out item is a candidate, whether or not it has a positive test event: ranking only those
    # with one would tell the model which they are.
    pos = to_implicit(train, threshold)
    held = np.unique(test.items)
    return Task("new items", pos, to_implicit(test, threshold), pos.binary, train_explicit=train,
                candidates=held, held_out=int(len(held)), profile_fn=profiles)


def new_user_task(train: Interactions, support: Interactions, test: Interactions, profiles) -> Task:
    users = np.unique(test.users)
    return Task("new users", train, test, support.binary, users=users, support=support, held_out=int(len(users)),
                profile_fn=profiles)


def scenario_tasks(dataset: Dataset, split_config: SplitConfig, cold: ColdStartConfig, content: ItemContent | None,
           profiles) -> list[Task]:
    """The warm task and each cold-start scenario of one seed."""
    threshold = split_config.rating_threshold
    events = dataset.interactions
    if split_config.positives_first:
        events = to_implicit(events, threshold)
    tasks = [warm_task(*split(events, split_config), threshold, profiles)]
    if (cold.items or cold.users) and content is None:
        raise ConfigError("cold-start scenarios need item content: add a [content] section")
    events = k_core(dataset.interactions, split_config.min_core)
    if cold.items:  # items are drawn among all items with events, before the rating threshold
        tasks.append(new_item_task(*cold_item_split(events, cold.items, split_config.seed), threshold, profiles))
    if cold.users:
        tasks.append(new_user_task(*cold_user_split(to_implicit(events, threshold), cold.users, cold.support,
                                                     split_config.seed), profiles))
    return tasks


def validation_task(task: Task, split_config: SplitConfig, cold: ColdStartConfig, profiles) -> Task:
    """The same kind of scenario carved out of ``task``'s training part (the test part is not read)."""
    threshold, frac, seed = split_config.rating_threshold, split_config.validation_fraction, split_config.seed
    if task.name == WARM:
        fit, val, _ = validation_split(task.train_explicit, split_config.kind, frac, seed)
        return warm_task(fit, val, threshold, profiles)
    if task.name == "new items":
        fit, val, _ = validation_split(task.train_explicit, "cold_items", frac, seed)
        return new_item_task(fit, val, threshold, profiles)
    return new_user_task(*validation_split(task.train, "cold_users", frac, seed, cold.support), profiles)


def split_info(cfg: SplitConfig, tasks: list[Task], item_vectors, has_genres: bool) -> dict[str, Any]:
    warm = tasks[0]
    info = {**cfg.model_dump(), "train_events": warm.train_explicit.n_events,
            "test_events": warm.test_explicit.n_events, "train_positives": warm.train.n_events,
            "test_positives": warm.test.n_events,
            "diversity_vectors": "training co-occurrence" if item_vectors is None
            else "item genres" if has_genres else "item attributes"}
    info["cold_start"] = {t.name: {"train_events": t.train.n_events, "test_events": t.test.n_events,
                                   "held_out": t.held_out} for t in tasks[1:]}
    return info
