"""The one pipeline every list goes through: candidates → filters → the user's rules → selection →
explanation → log.

The API, ``mosaicrec recommend``, ``mosaicrec export`` (in one process and on Ray workers), the web page and
the off-policy targets all call :meth:`Pipeline.run`; none ranks a user another way. A run reads one
:class:`~mosaicrec.ranking.snapshot.Snapshot` (model, catalog, content) and the
:class:`~mosaicrec.ranking.live.LiveState` (every user's events and rules):

1. **candidates** — the user's :mod:`personal <mosaicrec.ranking.personal>` scores (their model row, or
   their live likes folded in), or the popular items for a user with nothing to go on (``cold_start``);
2. **filters** — attribute filters (``genre: Comedy``) and the request's exclusions, applied *before* the
   top-k so that ``k`` items come back whenever ``k`` pass;
3. **the user's rules** — items they disliked never come back, items they liked only with
   ``exclude_seen=False``, and an erased user is served as a new one (their model row is blocked);
4. **selection** — greedy, MMR diversity, or an exploring policy (a bandit, ε-greedy or Plackett–Luce
   sampling) with each item's propensity at its position;
5. **explanation** — each item cites a recent like (:func:`~mosaicrec.ranking.reasons.explain_list`);
6. **log** — the shown list goes to the impression log, when the caller keeps one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import numpy as np

from mosaicrec.errors import MosaicError
from mosaicrec.ranking.lists import ItemList, Recommended
from mosaicrec.ranking.live import LiveState, history_indices
from mosaicrec.ranking.personal import Scorer
from mosaicrec.ranking.reasons import KGIndex, explain_list
from mosaicrec.ranking.retrieval import top_allowed
from mosaicrec.ranking.selection import greedy, mmr_bounds, mmr_pool, mmr_select
from mosaicrec.ranking.snapshot import Snapshot

Reasons = Literal["content", "model", "none"]


@dataclass(frozen=True)
class Request:
    """One list to make. ``exclude``: item ids never to return; ``filters``: ``attribute: value`` (a value,
    or a member of a list attribute); ``diversity`` in (0, 1]: MMR at λ = 1 − diversity; ``scenario``: the
    request's value of a context model's context column; ``reasons``: ``content`` cites the liked item
    closest in content, ``model`` the liked item whose removal lowers the item's score most (about
    |history| + 1 fold-ins more), ``none`` gives no reasons (batch exports)."""

    user_id: str
    k: int = 10
    exclude: tuple[str, ...] = ()
    diversity: float | None = None
    filters: Mapping[str, Any] = field(default_factory=dict)
    exclude_seen: bool = True
    scenario: str | None = None
    request_id: str | None = None
    reasons: Reasons = "content"

    def __post_init__(self) -> None:
        if self.reasons not in ("content", "model", "none"):
            raise MosaicError(f"reasons must be content or model, not {self.reasons!r}")
        if not 1 <= self.k <= 10_000:
            raise MosaicError(f"k must be between 1 and 10000, got {self.k}")
        if self.diversity is not None and not 0.0 <= self.diversity <= 1.0:
            raise MosaicError(f"diversity must be between 0 and 1, got {self.diversity}")

    @property
    def cost(self) -> float:
        """The list's work, known before it starts, in units of a plain top-10 (what a rate limit charges
        and what decides whether it runs beside the event loop): each 100 items shown and explained past
        the tenth cost one; MMR costs its picks times its pool over 5,000; reasons by the model a tenth
        per item (a fold-in each)."""
        cost = 1.0 + max(0, self.k - 10) / 100
        if self.diversity:
            picks, pool = mmr_bounds(self.k)
            cost += picks * pool / 5_000
        if self.reasons == "model":
            cost += self.k / 10
        return cost


class Explorer(Protocol):
    """A policy that picks some lists from the model's candidates: a learning bandit
    (:mod:`mosaicrec.serving.bandit`, which reads content vectors) or plain exploration
    (:mod:`mosaicrec.ranking.explore`), from the model's best ``n_candidates`` allowed items."""

    name: str
    n_candidates: int
    needs_content: bool

    def serves(self, request_id: str, scenario: str | None) -> bool: ...

    def choose(self, request_id: str, user_id: str, candidates: ItemList, item_vectors: np.ndarray,
               profile: np.ndarray | None, k: int) -> ItemList: ...


#: what the log step is given: the request, the user's shown list, the snapshot it was made from
LogStep = Callable[[Request, ItemList, Snapshot], None]


class Pipeline:
    """Runs :class:`Request` values over a snapshot and the live state (see the module)."""

    def __init__(self, live: LiveState, scorer: Scorer | None = None, *, explorer: Explorer | None = None,
                 kg: KGIndex | None = None, log: LogStep | None = None) -> None:
        self.live, self.scorer = live, scorer or Scorer()
        self.explorer, self.kg, self.log = explorer, kg, log

    def run(self, snap: Snapshot, request: Request) -> Recommended:
        """The user's list by every step of the pipeline."""
        model = snap.view.model
        known = model.knows_context(request.scenario, "scenario") if request.scenario is not None else None
        if request.request_id is None:
            request = replace(request, request_id=uuid.uuid4().hex)
        rid = request.request_id
        ev = self.live.get(request.user_id)
        hist = history_indices(ev.positives, snap.catalog.index)
        allowed = self.allowed(snap, request)
        diverse = bool(request.diversity) and snap.content is not None
        explore = (self.explorer is not None and not diverse
                   and (snap.content is not None or not self.explorer.needs_content)
                   and self.explorer.serves(rid, request.scenario))
        n = mmr_pool(request.k) if diverse else request.k
        if explore:
            n = max(n, self.explorer.n_candidates)
        personal = self.scorer.personal(snap, self.live, request.user_id, ev, hist, request.scenario)
        if personal is None:
            ids, scores = top_allowed(snap.popularity, n, allowed)
            candidates = ItemList(ids, scores, policy="popular")
        else:
            candidates = personal.candidates(snap, n, allowed)
        shown = self.select(snap, candidates, request, rid, hist, explore)
        if request.reasons != "none" and len(shown):
            shown = explain_list(snap, shown, hist, by_model=request.reasons == "model", lock=self.scorer.lock,
                                 kg=self.kg)
        if self.log is not None and len(shown):
            self.log(request, shown, snap)
        return Recommended(request.user_id, rid, model.name, shown.policy, personal is None,
                           shown.entries(snap.catalog), request.scenario, known)

    def allowed(self, snap: Snapshot, request: Request) -> np.ndarray:
        """Steps 2 and 3: the catalog items this list may hold (filters, exclusions, the user's rules)."""
        cat = snap.catalog
        allowed = cat.filter.mask(request.filters) if request.filters else np.ones(len(cat), bool)
        ev = self.live.get(request.user_id)
        for item in (*ev.negatives, *(ev.positives if request.exclude_seen else ()), *request.exclude):
            at = cat.index.get(item)
            if at is not None:
                allowed[at] = False
        return allowed

    def select(self, snap: Snapshot, candidates: ItemList, request: Request, request_id: str, hist: np.ndarray,
               explore: bool) -> ItemList:
        """Step 4: the shown list, with each item's propensity under the policy that chose it."""
        if explore and len(candidates):
            if not self.explorer.needs_content:
                return self.explorer.choose(request_id, request.user_id, candidates, None, None, request.k)
            vecs = snap.content.vectors
            profile = vecs[hist[-200:]].mean(axis=0) if len(hist) else None
            return self.explorer.choose(request_id, request.user_id, candidates, vecs[candidates.items], profile,
                                        request.k)
        if request.diversity and snap.content is not None:
            return mmr_select(candidates, snap.content.vectors, request.k, 1.0 - request.diversity)
        return greedy(candidates, request.k)

    def scores(self, snap: Snapshot, user_id: str, scenario: str | None = None) -> np.ndarray:
        """The user's scores over every catalog item (``-inf`` where none can be given); the popular items'
        counts for a user with nothing to go on (what search blends a user's taste with)."""
        ev = self.live.get(user_id)
        hist = history_indices(ev.positives, snap.catalog.index)
        personal = self.scorer.personal(snap, self.live, user_id, ev, hist, scenario)
        return snap.popularity.copy() if personal is None else personal.all_scores(snap)
