"""The one list value: what retrieval finds, selection picks, explanation annotates and the API returns.

An :class:`ItemList` holds catalog rows best first with their scores, the probability each was shown with
under the policy that chose the list (its propensity, which the impression log keeps for off-policy
evaluation), the policy's name, and once explained, a :class:`Reason` per item. Every step of the pipeline
(:mod:`mosaicrec.ranking.pipeline`) takes a list and returns one; none copies it into another type.

Its rows as a person (or a client) sees them are :class:`Entry` values (:meth:`ItemList.entries`), and the
HTTP response is :class:`Recommended`: the API's response models are these dataclasses themselves, so
a field added here is in the API and its OpenAPI document without a second copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Protocol

import numpy as np
from pydantic import Field


@dataclass(frozen=True)
class Reason:
    """Why an item is in a user's list: the liked catalog row it cites, the modality in which the two are
    most alike, the sentence shown, and (with a knowledge graph) how the two are linked."""

    because: int
    modality: str | None
    text: str
    kg_path: str | None = None


class Catalog(Protocol):
    """What rendering a list reads of a catalog (:class:`~mosaicrec.ranking.snapshot.Catalog`)."""

    ids: Sequence[str]
    titles: Sequence[str]
    attributes: Sequence[dict[str, Any]]


@dataclass
class Entry:
    """One item of a list as a client sees it."""

    item_id: str
    title: str
    score: float
    explanation: str | None = None
    because: Annotated[str | None, Field(description="the liked item the explanation cites")] = None
    modality: Annotated[str | None, Field(description="the modality in which it is closest")] = None
    attributes: dict[str, Any] = field(default_factory=dict)
    kg_path: Annotated[str | None, Field(
        description="how the item and the cited one are linked in the knowledge graph (served with --kg), "
                    "e.g. \"you liked X; both are directed by Y\"")] = None
    propensity: Annotated[float, Field(description="the probability that the list's policy showed this item "
                                                   "here (1 for deterministic policies)")] = 1.0


@dataclass(frozen=True)
class Draw:
    """How a stochastic policy drew a list, kept beside the list in the log so that the probability of
    *any* item at *any* position (not only the shown ones) can be computed later: what off-policy
    evaluation needs to say whether a target's list was possible at all, and to weight it.

    ``candidates``: the catalog rows the policy drew from (model-score order) with their ``scores``;
    ``greedy``: the list it shows when it does not explore; ``kind``: ``epsilon-greedy`` (the greedy list
    with 1 − ε, else a uniformly random ordered draw of the candidates), ``plackett-luce`` (draws without
    replacement, each in proportion to exp(z / temperature), z the candidates' standardised scores) or
    ``thompson`` (posterior sampling: only the shown items' probabilities are known); ``explored``: this
    list was an ε-greedy random draw."""

    kind: str
    candidates: np.ndarray
    scores: np.ndarray
    greedy: np.ndarray
    epsilon: float = 0.0
    temperature: float = 1.0
    explored: bool = False


@dataclass(frozen=True)
class ItemList:
    """Catalog rows best first, their scores and propensities (each item's probability *at its position*
    under the policy), the policy, how a stochastic policy drew it and (once explained) reasons."""

    items: np.ndarray
    scores: np.ndarray
    propensities: np.ndarray | None = None
    policy: str = "greedy"
    reasons: tuple[Reason | None, ...] | None = None
    draw: Draw | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", np.asarray(self.items, np.int64))
        object.__setattr__(self, "scores", np.asarray(self.scores, np.float32))
        if self.propensities is None:
            object.__setattr__(self, "propensities", np.ones(len(self.items)))
        if not len(self.items) == len(self.scores) == len(self.propensities):
            raise ValueError("an item list needs as many scores and propensities as items")
        if self.reasons is not None and len(self.reasons) != len(self.items):
            raise ValueError("an item list needs one reason (or None) per item")

    def __len__(self) -> int:
        return len(self.items)

    @classmethod
    def empty(cls, policy: str = "greedy") -> ItemList:
        return cls(np.empty(0, np.int64), np.empty(0, np.float32), policy=policy)

    def head(self, k: int) -> ItemList:
        """The first ``k`` items (with their reasons, if any)."""
        return self.take(np.arange(min(k, len(self))))

    def take(self, positions: np.ndarray) -> ItemList:
        """The items at ``positions`` of this list, in that order."""
        positions = np.asarray(positions, np.int64)
        return ItemList(self.items[positions], self.scores[positions], self.propensities[positions], self.policy,
                        None if self.reasons is None else tuple(self.reasons[p] for p in positions.tolist()),
                        self.draw)

    def finite(self) -> ItemList:
        """Without items whose score is not a finite number (nothing to rank them by)."""
        return self.take(np.flatnonzero(np.isfinite(self.scores)))

    def with_policy(self, policy: str) -> ItemList:
        return replace(self, policy=policy)

    def with_reasons(self, reasons: Sequence[Reason | None]) -> ItemList:
        return replace(self, reasons=tuple(reasons))

    def entries(self, catalog: Catalog) -> list[Entry]:
        """The rows a client sees: ids, titles and attributes from ``catalog``, scores and reasons."""
        out = []
        reasons = self.reasons or (None,) * len(self)
        for i, score, p, why in zip(self.items.tolist(), self.scores.tolist(), self.propensities.tolist(), reasons):
            entry = Entry(catalog.ids[i], catalog.titles[i], float(score), attributes=catalog.attributes[i],
                          propensity=float(p))
            if why is not None:
                entry.explanation, entry.because, entry.modality = why.text, catalog.ids[why.because], why.modality
                entry.kg_path = why.kg_path
            out.append(entry)
        return out


@dataclass
class Recommended:
    """A user's list as the API, the CLI, the export and the page return it."""

    user_id: str
    request_id: Annotated[str, Field(description="names this list in the impression log")]
    model: str
    policy: Annotated[str, Field(description="how the list was chosen: greedy, greedy+mmr(...), popular, "
                                 "bandit:<policy> (post a reward per shown item as an event with context "
                                 "{\"request_id\": ...})")]
    cold_start: Annotated[bool, Field(description="true when the user has no likes to go on: the popular "
                                      "items")]
    items: list[Entry]
    scenario: str | None = None
    scenario_known: Annotated[bool | None, Field(description="false: the model never saw this scenario and "
                                                 "ranks with its shared scores")] = None
