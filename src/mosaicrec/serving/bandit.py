"""A contextual bandit in the service: it picks each list from the model's candidates and learns from the
rewards posted back, so the service explores instead of always showing what the model already believes.

For a request it serves (a share of traffic, optionally some scenarios only), the model's top
``candidates`` items are the arms. An item's features are its fused content vector projected to ``dims``
numbers (a fixed seeded random projection, the same after a restart), the model's score standardised
over the candidates, and 1; the context is the user's profile (the mean content vector of their likes,
projected the same way). :class:`~mosaicrec.ranking.bandits.LinearBandit` scores their outer product and
picks the list with each item's propensity, which the impression log keeps.

A reward is an event whose context carries the list's ``request_id`` (``POST /events`` with
``"context": {"request_id": ...}``): weight at or above the positive threshold is reward 1, below it 0.
Only items of that list count, each once, and only from the user the list was served to: a write key
posting another user's ``request_id`` cannot steer what the bandit learns. The pending lists are kept in memory (the latest
``pending`` ones); the bandit's statistics are saved in the store after each batch of rewards and read
back at start, so learning survives a restart.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mosaicrec.ranking.bandits import BanditConfig, LinearBandit, features
from mosaicrec.ranking.explore import in_share
from mosaicrec.ranking.lists import Draw, ItemList

STATE_NAME = "bandit"


class BanditServing(BaseModel):
    """Which requests a bandit serves, and how."""

    model_config = ConfigDict(extra="forbid")

    policy: BanditConfig = Field(default_factory=BanditConfig)
    share: float = Field(1.0, ge=0, le=1, description="share of requests the bandit serves (by request id)")
    scenarios: list[str] | None = Field(None, max_length=1000, description="only these scenarios; None: all")
    candidates: int = Field(50, ge=2, le=1000, description="the model's top items the bandit chooses from")
    dims: int = Field(8, ge=1, le=64, description="content vector projection width")
    pending: int = Field(100_000, ge=10, le=10_000_000, description="lists kept awaiting rewards")
    seed: int = 0


class BanditRuntime:
    """The bandit's state in a running service (thread-safe)."""

    needs_content = True

    def __init__(self, config: BanditServing, state: dict[str, np.ndarray] | None = None) -> None:
        self.config = config
        dim = (config.dims + 1) * (config.dims + 2)
        self.bandit = LinearBandit(dim, config.policy, seed=config.seed)
        self.restored = False
        if state is not None:
            try:
                restored = LinearBandit.from_state(state, seed=config.seed)
            except (ValueError, KeyError):  # a damaged saved state: start afresh rather than refuse to serve
                restored = None
            # a state saved under other settings does not fit these features: start afresh rather than guess
            if restored is not None and restored.dim == dim and restored.config == config.policy:
                self.bandit, self.restored = restored, True
        self._proj: dict[int, np.ndarray] = {}
        self._pending: OrderedDict[str, tuple[str, dict[int, np.ndarray]]] = OrderedDict()
        self._lock = threading.Lock()
        self.rewards = 0
        self.unmatched = 0  # events naming a list the bandit chose, but another user, an item not in it, or twice
        self.other_lists = 0  # events naming a list the bandit did not choose (or no longer holds): not rewards

    @property
    def name(self) -> str:
        return f"bandit:{self.config.policy.policy}"

    def serves(self, request_id: str, scenario: str | None) -> bool:
        cfg = self.config
        if cfg.scenarios is not None and scenario not in cfg.scenarios:
            return False
        return in_share(request_id, cfg.share)

    def _project(self, vectors: np.ndarray) -> np.ndarray:
        width = vectors.shape[1]
        if width not in self._proj:
            rng = np.random.default_rng(self.config.seed)
            self._proj[width] = rng.standard_normal((width, self.config.dims)) / np.sqrt(self.config.dims)
        return vectors @ self._proj[width]

    def features(self, item_vectors: np.ndarray, scores: np.ndarray, profile: np.ndarray | None) -> np.ndarray:
        s = np.asarray(scores, np.float64)
        z = (s - s.mean()) / s.std() if len(s) > 1 and s.std() > 0 else np.zeros(len(s))
        items = np.column_stack([self._project(np.asarray(item_vectors, np.float64)), z, np.ones(len(s))])
        ctx = (self._project(np.asarray(profile, np.float64)[None, :])[0] if profile is not None
               else np.zeros(self.config.dims))
        return features(items, ctx)

    @property
    def n_candidates(self) -> int:
        return self.config.candidates

    def choose(self, request_id: str, user_id: str, candidates: ItemList, item_vectors: np.ndarray,
               profile: np.ndarray | None, k: int) -> ItemList:
        """Pick ``k`` of the candidates (catalog rows, best first by the model; ``item_vectors`` their
        content rows) and remember the list, and whom it was shown to, for its rewards."""
        phi = self.features(item_vectors, candidates.scores, profile)
        with self._lock:
            slate = self.bandit.select(phi, min(k, len(candidates)))
            self._pending[request_id] = (user_id, {int(candidates.items[i]): phi[i] for i in slate.items})
            while len(self._pending) > self.config.pending:
                self._pending.popitem(last=False)
        policy = self.config.policy.policy
        draw = None if policy == "linucb" else Draw(  # LinUCB is deterministic: propensity 1, nothing to redraw
            policy, candidates.items, candidates.scores, candidates.items[slate.greedy],
            epsilon=self.config.policy.epsilon if policy == "epsilon-greedy" else 0.0, explored=slate.explored)
        return ItemList(candidates.items[slate.items], candidates.scores[slate.items], slate.propensities, self.name,
                        draw=draw)

    def reward(self, rewards: list[tuple[str, str, int, float]]) -> int:
        """Learn from (request id, user id, catalog row, reward); returns how many matched an item not yet
        rewarded of a list it chose and showed to that user. Feedback on lists it did not choose (the
        greedy share of traffic) is counted in ``other_lists``, the rest in ``unmatched``."""
        rows, values = [], []
        with self._lock:
            for rid, user, item, value in rewards:
                shown = self._pending.get(rid)
                if shown is None:
                    self.other_lists += 1
                    continue
                phi = shown[1].pop(item, None) if shown[0] == user else None
                if phi is None:
                    self.unmatched += 1
                    continue
                rows.append(phi)
                values.append(value)
            if rows:
                self.bandit.update(np.array(rows), np.array(values))
                self.rewards += len(rows)
        return len(rows)

    def state(self) -> dict[str, np.ndarray]:
        with self._lock:
            return self.bandit.state()
