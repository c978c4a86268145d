"""Context models R(u, i, c): scores that depend on the request's context, e.g. the app surface
(scenario) where the list is shown.

Both models read one categorical event-context column (``context``, default ``"scenario"``) at ``fit``
and take the request's value at ``score``/``recommend`` (``context="<value>"``). A value never seen in
training, or no value, gets the shared, context-free scores, so a new surface degrades to the plain model
instead of failing.

* ``scenario-pop``: popularity within the context, shrunk towards global popularity — the baseline any
  context model must beat.
* ``scenario-bpr``: multi-scenario BPR. Users and items share factors across contexts and each context
  adds a shift of the user vector and an item bias (as context-aware MF, Baltrunas et al. 2011):
  ``s(u, i, c) = (U_u + W_c)·V_i + b_i + B_ci``. Small contexts borrow everything from the shared part;
  a share of the training samples drops its context so that the shared part alone is a good model.
  The score is an inner product of ``[U_u + W_c, onehot(c)]`` with ``[V_i, B_·i]``, so one
  maximum-inner-product index over the items serves every context exactly.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from mosaicrec.data.schema import Interactions
from mosaicrec.models import _kernels
from mosaicrec.models.query import Query
from mosaicrec.models.base import BaseRecommender, ModelConfig
from mosaicrec.models.registry import register
from mosaicrec.models.mf import BPR, BPRConfig


def context_values(train: Interactions, key: str, min_events: int) -> tuple[np.ndarray, np.ndarray]:
    """(known values, sorted; per-event code: 1 + position, 0 for a missing or too rare value)."""
    raw = np.asarray(train.context[key]).astype(str)
    values, inverse, counts = np.unique(raw, return_inverse=True, return_counts=True)
    keep = (values != "") & (counts >= min_events)
    codes_of_value = np.where(keep, np.cumsum(keep), 0)
    return values[keep].astype(object), codes_of_value[inverse].astype(np.int32)


class ScenarioPopConfig(ModelConfig):
    context: str = Field("scenario", description="the event-context column the scores depend on")
    prior: float = Field(20.0, ge=0.0, description="pseudo-counts of global popularity mixed into each "
                         "context's counts (shrinks small contexts towards the global ranking)")
    min_events: int = Field(1, ge=1, description="context values with fewer training events are ignored")


@register("scenario-pop")
class ScenarioPop(BaseRecommender):
    """Popularity in the request's context: (n_ci + m·p_i) / (n_c + m), with n_ci the distinct users who
    interacted with item i in context c, n_c = Σ_i n_ci, p_i the item's global share and m = ``prior``."""

    Config = ScenarioPopConfig
    uses_context = True

    def _fit(self, train: Interactions) -> None:
        cfg = self.config
        self.contexts_, codes = context_values(train, cfg.context, cfg.min_events)
        # distinct users per (context, item): a user who watched an item twice in one context counts once
        key = np.unique(np.stack([codes.astype(np.int64), train.items, train.users]), axis=1)
        counts = sp.csr_matrix((np.ones(key.shape[1], np.float32), (key[0], key[1])),
                               shape=(len(self.contexts_) + 1, train.n_items)).toarray()
        total = np.asarray(train.binary.sum(axis=0)).ravel().astype(np.float32)
        share = total / max(float(total.sum()), 1.0)
        self.table_ = ((counts + cfg.prior * share) / (counts.sum(axis=1, keepdims=True) + cfg.prior)
                       ).astype(np.float32)
        self.table_[0] = share  # no context: the global ranking

    def _scores(self, query: Query) -> np.ndarray:
        return self.table_[self.query_codes(query)]

    def _state(self) -> dict[str, np.ndarray]:
        return {"table": self.table_, "contexts": self.contexts_.astype(str)}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.table_, self.contexts_ = state["table"], state["contexts"].astype(object)


class ScenarioBPRConfig(BPRConfig):
    context: str = Field("scenario", description="the event-context column the scores depend on")
    context_regularization: float = Field(0.01, ge=0.0, description="L2 on the per-context user shifts "
                                          "and item biases: higher keeps small contexts near the shared model")
    shared_share: float = Field(0.2, ge=0.0, le=1.0, description="share of training samples that drop "
                                "their context, training the shared part to stand alone")
    min_events: int = Field(20, ge=1, description="context values with fewer training events are ignored")


@register("scenario-bpr")
class ScenarioBPR(BPR):
    """Multi-scenario BPR: ``(U_u + W_c)·V_i + b_i + B_ci`` (see the module docs), trained on the events'
    contexts with the Hogwild SGD of :class:`~mosaicrec.models.BPR`."""

    Config = ScenarioBPRConfig
    uses_context = True
    _state_keys = ("U", "V", "item_bias", "W", "B")

    def _fit(self, train: Interactions) -> None:
        cfg = self.config
        X = train.binary
        self.contexts_, codes = context_values(train, cfg.context, cfg.min_events)
        self._init_factors(train.n_users, train.n_items, cfg.factors, 0.01, cfg.seed)
        self.item_bias_ = np.zeros(train.n_items, dtype=np.float32)
        self.W_ = np.zeros((len(self.contexts_) + 1, cfg.factors), np.float32)
        self.B_ = np.zeros((len(self.contexts_) + 1, train.n_items), np.float32)
        threads = _kernels.set_threads(cfg.num_threads)
        users, items = train.users.astype(np.int32), train.items.astype(np.int32)
        for it in range(cfg.iterations):
            t0 = time.perf_counter()
            skipped, correct = _kernels.bpr_epoch(
                users, items, codes, X.indptr, X.indices, self.U_, self.V_, self.item_bias_, self.W_, self.B_,
                cfg.learning_rate, cfg.regularization, cfg.context_regularization, cfg.shared_share, threads,
                np.uint64(cfg.seed * 1_000_003 + it))
            self._epoch_done({"iteration": it, "seconds": time.perf_counter() - t0,
                                  "correct": correct, "skipped": skipped})

    # -- the factor view: [U_u + W_c, onehot(c)] · [V_i, B_1i … B_Ci] + b_i ------------------------------
    def item_factors(self) -> tuple[np.ndarray, np.ndarray | None]:
        hit = self.__dict__.get("_items_of")
        if hit is None or hit[0] is not self.V_ or hit[1] is not self.B_:
            hit = self._items_of = (self.V_, self.B_, np.hstack([self.V_, self.B_[1:].T]).astype(np.float32))
        return hit[2], self.item_bias_

    def query_factors(self, query: Query) -> np.ndarray:
        return self._with_context(super().query_factors(query), self.query_codes(query))

    def _with_context(self, q: np.ndarray, codes: np.ndarray) -> np.ndarray:
        onehot = np.zeros((len(q), len(self.contexts_)), np.float32)
        hit = codes > 0
        onehot[np.flatnonzero(hit), codes[hit] - 1] = 1.0
        return np.hstack([q + self.W_[codes], onehot]).astype(np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        return {**super()._state(), "contexts": self.contexts_.astype(str)}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        super()._set_state(state)
        self.contexts_ = state["contexts"].astype(object)
