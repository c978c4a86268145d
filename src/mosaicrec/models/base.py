"""The recommender protocol and a base class that implements the shared parts (the registry of model
names is :mod:`mosaicrec.models.registry`).

Every model takes an :class:`~mosaicrec.data.Interactions` (index arrays + a CSR matrix) at ``fit`` and
works on integer user/item indices afterwards; mapping external ids is the caller's job (the id maps travel
with the model when saved). Hyper-parameters live in one pydantic ``Config`` per model, with defaults and
bounds, so a config file validates before any training starts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict

from mosaicrec import __version__
from mosaicrec.data.content import ItemContent
from mosaicrec.models import _kernels
from mosaicrec.data.schema import Interactions
from mosaicrec.errors import ConfigError, MosaicError, NotFittedError, NotSupportedError
from mosaicrec.models.query import Context, Query


class ModelConfig(BaseModel):
    """Base of every model's hyper-parameter model: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


@runtime_checkable
class Recommender(Protocol):
    """What every model offers. Users and items are integer indices into the training id maps."""

    name: ClassVar[str]
    config: ModelConfig

    def fit(self, train: Interactions, content: ItemContent | None = None,
            user_profiles: np.ndarray | None = None) -> Self: ...

    def score(self, query: Query | np.ndarray, items: np.ndarray | None = None,
              context: Context = None) -> np.ndarray: ...

    def recommend(self, query: Query | np.ndarray, k: int = 10, exclude_seen: bool = True,
                  candidates: np.ndarray | None = None, context: Context = None
                  ) -> tuple[np.ndarray, np.ndarray]: ...

    def save(self, path: Path) -> None: ...

    @classmethod
    def load(cls, path: Path) -> Self: ...


class BaseRecommender:
    """Shared machinery: seen-item masking, batched top-k, save/load. A model implements ``_fit``,
    ``_scores`` (scores of all items for the rows of a :class:`Query`) and, to be saved,
    ``_state``/``_set_state``."""

    name: ClassVar[str] = "base"
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    #: ``True`` for models that predict ratings (evaluated with RMSE/MAE too).
    predicts_ratings: ClassVar[bool] = False
    #: ``True`` for models that read item content (they refuse to fit without it).
    needs_content: ClassVar[bool] = False
    #: ``True`` for models that read user profiles (``user_profiles`` at fit, ``profiles`` at fold-in);
    #: callers need not embed profiles for the others.
    uses_profiles: ClassVar[bool] = False
    #: ``True`` for models that learn from every logged impression (engaged or not) and its outcome
    #: columns, so an experiment fits them on the explicit events, not only the positives.
    trains_on_impressions: ClassVar[bool] = False
    #: ``True`` for models trained (and, for some, scored) with torch.
    uses_torch: ClassVar[bool] = False
    #: ``True`` for context models R(u, i, c): their config names the event-context column (``context``)
    #: their scores depend on, and ``contexts_`` lists the values seen in training.
    uses_context: ClassVar[bool] = False
    #: called with each epoch's record (``epoch``/``iteration``, ``seconds``, the monitored loss) as training
    #: runs, plus ``total`` (the epochs planned): how the CLI shows progress. Not saved.
    on_epoch: Callable[[dict[str, Any]], None] | None = None

    def __init__(self, config: ModelConfig | None = None, **params: Any) -> None:
        self.config = config if config is not None else self.Config(**params)
        self._seen: sp.csr_matrix | None = None
        self.user_ids: np.ndarray | None = None
        self.item_ids: np.ndarray | None = None

    # -- protocol ---------------------------------------------------------------------------------------
    def fit(self, train: Interactions, content: ItemContent | None = None,
            user_profiles: np.ndarray | None = None) -> Self:
        """Train on ``train``; returns ``self``.

        ``content`` (per-modality item embeddings, any catalog order: it is aligned to ``train.item_ids``)
        is read by content models, which score items without training events from it; ``user_profiles``
        (``n_users × d``, row per user index, e.g. the embedded text of a user's attributes and history)
        by models with a user tower. Interaction-only models ignore both.
        """
        if train.n_events == 0:
            raise MosaicError(f"{self.name}: cannot fit on zero events")
        if self.needs_content and content is None:
            raise ConfigError(f"{self.name} reads item content: pass content= (from `mosaicrec encode`) "
                              "or add a [content] section to the config")
        if self.uses_context and self.context_key not in train.context:
            have = ", ".join(sorted(train.context)) or "none"
            raise ConfigError(f"{self.name} conditions on the event context {self.context_key!r}, which these "
                              f"events lack (their context columns: {have}); set the model's context= "
                              "parameter or the dataset's event_schema.context")
        if user_profiles is not None and user_profiles.shape[0] != train.n_users:
            raise MosaicError(f"{self.name}: {user_profiles.shape[0]} user profiles for {train.n_users} users")
        _require_finite(train, self.name)
        self._seen = train.binary
        self.user_ids, self.item_ids = train.user_ids, train.item_ids
        self.content_ = content.align(train.item_ids) if content is not None else None
        self.user_profiles_ = user_profiles
        try:
            self._fit(train)
        finally:  # the model keeps what it derived, not the inputs
            self.content_ = self.user_profiles_ = None
        try:
            state = self._state()
        except NotImplementedError:  # a model that is never saved has nothing to check here
            state = {}
        for key, value in state.items():
            if np.issubdtype(np.asarray(value).dtype, np.floating) and not np.isfinite(value).all():
                raise MosaicError(f"{self.name}: training diverged ({key} holds NaN or inf values); lower the "
                                  "learning rate or check the event weights")
        return self

    @classmethod
    def runs_torch(cls, params: dict[str, Any]) -> bool:
        """Whether this model with these parameters trains with torch."""
        return cls.uses_torch

    def _epoch_done(self, record: dict[str, Any]) -> None:
        """Keep an epoch's record in ``history_`` and tell :attr:`on_epoch`."""
        self.__dict__.setdefault("history_", []).append(record)
        if self.on_epoch is not None:
            total = getattr(self.config, "epochs", None) or getattr(self.config, "iterations", None)
            self.on_epoch({**record, "total": total})

    @property
    def n_users(self) -> int:
        return self._require_fitted().shape[0]

    @property
    def n_items(self) -> int:
        return self._require_fitted().shape[1]

    @property
    def context_key(self) -> str | None:
        """The event-context column (e.g. ``"scenario"``) a context model's scores depend on; ``None`` for
        context-free models, which rank the same in every context."""
        return getattr(self.config, "context", None) if self.uses_context else None

    def context_codes(self, context: Context, n: int) -> np.ndarray:
        """``context`` (one value for all ``n`` rows, or one per row) as codes: 1 + the value's position in
        ``contexts_``; 0 for ``None``, ``""`` and values never seen in training (the shared scores)."""
        if isinstance(context, Mapping):  # an event's whole context: the model reads its own column
            context = context.get(self.context_key) if self.context_key is not None else None
        if context is None or not self.uses_context:
            return np.zeros(n, np.int64)
        lookup = self.__dict__.get("_context_lookup")
        if lookup is None or lookup[0] is not self.contexts_:
            lookup = self._context_lookup = (self.contexts_, {str(v): k + 1 for k, v in enumerate(self.contexts_)})
        if isinstance(context, str):
            return np.full(n, lookup[1].get(context, 0), np.int64)
        values = list(context)
        if len(values) != n:
            raise MosaicError(f"{self.name}: {len(values)} context values for {n} rows")
        return np.array([lookup[1].get(str(v), 0) if v is not None else 0 for v in values], np.int64)

    def knows_context(self, value: str, noun: str = "context") -> bool:
        """Whether ``value`` of the context column was seen in training (else it gets the shared scores).
        A context-free model raises instead: asked to rank in a context (a ``noun``, e.g. a scenario), it
        would silently rank the same in all of them."""
        if not self.uses_context:
            raise MosaicError(f"{self.name} ranks the same in every {noun}: train a context model "
                              f"(scenario-bpr, scenario-pop) on events with a context column, or leave the "
                              f"{noun} out")
        return bool(self.context_codes(value, 1)[0] > 0)

    # -- factor view (what maximum-inner-product retrieval indexes) -----------------------------------
    def item_factors(self) -> tuple[np.ndarray, np.ndarray | None] | None:
        """``(V, b)``: item vectors (``n_items × d``) and biases (or ``None``) of a model whose score of
        user u and item i ranks like ``q_u·v_i + b_i`` (a per-user constant aside), else ``None``. An
        ANN index over these serves the model's top-k without scoring every item."""
        return None

    def query_factors(self, query: Query) -> np.ndarray:
        """The vectors ``q`` of a query's rows (models with :meth:`item_factors`): trained users' vectors, or
        new users folded in from their history (and profiles); a context model folds the query's context
        in too, so one index over :meth:`item_factors` serves every context and every kind of user."""
        raise NotSupportedError(f"{self.name} has no user vectors")

    # -- scoring: one entry point over a query ----------------------------------------------------------
    #: what :meth:`score` can return per query (``Query.head``): the ranking score, and for multi-task
    #: models each task's output too
    heads: ClassVar[tuple[str, ...]] = ("score",)

    def score(self, query: Query | np.ndarray, items: np.ndarray | None = None,
              context: Context = None) -> np.ndarray:
        """The model's scores for a :class:`~mosaicrec.models.query.Query`, float32.

        A query of rows (trained users, or new users by their events, folded in) gives ``len(query) ×
        n_items`` scores (the columns ``items`` only, when given); a query of pairs (``Query.items``) one
        score per row. Its context reaches context models, its ``head`` multi-task models. An array of
        trained user indices (with ``context``) is read as ``Query(users=…, context=…)``."""
        if not isinstance(query, Query):
            query = Query(users=query, context=context)
        elif context is not None:
            raise MosaicError(f"{self.name}: give the context inside the query")
        seen = self._require_fitted()
        if query.head not in self.heads:
            raise NotSupportedError(f"{self.name} has no head {query.head!r}; its heads: {', '.join(self.heads)}")
        if query.new_users:
            if query.history.shape[1] != seen.shape[1]:
                raise MosaicError(f"{self.name}: history has {query.history.shape[1]} items, the model "
                                  f"{seen.shape[1]}")
        else:
            self._check_users(query.users)
        if query.items is not None:
            self._check_items(query.items)
            return np.asarray(self._pair_scores(query), dtype=np.float32)
        scores = np.asarray(self._scores(query), dtype=np.float32)
        return scores if items is None else scores[:, self._check_items(items)]

    def recommend(self, query: Query | np.ndarray, k: int = 10, exclude_seen: bool = True,
                  candidates: np.ndarray | None = None, context: Context = None, batch_size: int = 1024
                  ) -> tuple[np.ndarray, np.ndarray]:
        """The top ``k`` item indices and scores of every row of a query, best first, with its candidates
        and exclusions applied (default: each row's seen items). An array of trained user indices is read
        as ``Query(users=…, context=…, candidates=…, exclude_seen=…)``. Where fewer than ``k`` items remain
        (a tiny catalog, or everything excluded) rows are padded with item -1 and score -inf."""
        if not isinstance(query, Query):
            query = Query(users=self._check_users(query), context=context, candidates=candidates,
                          exclude_seen=exclude_seen)
        seen = self._require_fitted()
        n = len(query)
        ids = np.full((n, k), -1, dtype=np.int64)
        out = np.full((n, k), -np.inf, dtype=np.float32)
        allowed = None
        if query.candidates is not None:
            allowed = np.zeros(seen.shape[1], dtype=bool)
            allowed[np.asarray(query.candidates)] = True
        for start in range(0, n, batch_size):
            part = query.rows(start, start + batch_size)
            scores = self.score(part).astype(np.float32, copy=True)
            if part.exclude is not None:
                mask_rows(scores, sp.csr_matrix(part.exclude))
            elif part.exclude_seen:
                mask_rows(scores, part.history if part.new_users else seen[part.users])
            if allowed is not None:
                scores[:, ~allowed] = -np.inf
            top, top_scores = top_k(scores, k)
            ids[start:start + len(part), :top.shape[1]] = top
            out[start:start + len(part), :top.shape[1]] = top_scores
        ids[~np.isfinite(out)] = -1
        return ids, out

    def query_codes(self, query: Query) -> np.ndarray:
        """The query's context per row as codes (see :meth:`context_codes`)."""
        return self.context_codes(query.context, len(query))

    def _pair_scores(self, query: Query, block: int = 1024) -> np.ndarray:
        """One score per (row, ``query.items[row]``) pair: each distinct user (and context) is scored once,
        in blocks, and its items picked out. Multi-task and routing models override this."""
        out = np.empty(len(query), np.float32)
        items = np.asarray(query.items, np.int64)
        if query.new_users:
            for start in range(0, len(query), block):
                rows = np.arange(start, min(start + block, len(query)))
                out[rows] = self._scores(query.rows(start, rows[-1] + 1))[np.arange(len(rows)), items[rows]]
            return out
        codes = self.query_codes(query)
        for code in np.unique(codes):
            rows = np.flatnonzero(codes == code)
            value = None if code == 0 else str(self.contexts_[code - 1])
            users, inverse = np.unique(query.users[rows], return_inverse=True)
            for s in range(0, len(users), block):
                part = users[s:s + block]
                scores = self._scores(Query(users=part, context=value))
                hit = (inverse >= s) & (inverse < s + len(part))
                out[rows[hit]] = scores[inverse[hit] - s, items[rows[hit]]]
        return out

    def save(self, path: str | Path) -> None:
        """Write the model to a folder: ``model.json`` (name, config, id maps) and ``state.npz``."""
        self._require_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {"model": self.name, "config": self.config.model_dump(mode="json"),
                "mosaicrec_version": __version__}
        (path / "model.json").write_text(json.dumps(meta, indent=2))
        state = {f"state_{k}": v for k, v in self._state().items()}
        np.savez(path / "state.npz", user_ids=self.user_ids.astype(str), item_ids=self.item_ids.astype(str),
                 **csr_state("seen", self._seen), **state)

    @staticmethod
    def saved_name(path: str | Path) -> str | None:
        """The registered name of the model saved at ``path`` (what :func:`~.registry.load_model` looks up)."""
        try:
            return json.loads((Path(path) / "model.json").read_text()).get("model")
        except (OSError, ValueError) as e:
            raise MosaicError(f"cannot read a saved model at {path}: {e}") from None

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a model of this class written by :meth:`save` (:func:`~.registry.load_model` reads any)."""
        path = Path(path)
        try:
            meta = json.loads((path / "model.json").read_text())
            arrays = np.load(path / "state.npz", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise MosaicError(f"cannot read a saved model at {path}: {e}") from None
        if meta.get("model") != cls.name:
            raise MosaicError(f"{path} holds model {meta.get('model')!r}, not {cls.name!r}")
        model = cls(cls.Config(**meta["config"]))
        model._seen = csr_from_state("seen", arrays)
        model.user_ids = arrays["user_ids"].astype(object)
        model.item_ids = arrays["item_ids"].astype(object)
        model._set_state({k[len("state_"):]: arrays[k] for k in arrays.files if k.startswith("state_")})
        return model

    # -- for subclasses ---------------------------------------------------------------------------------
    def _fit(self, train: Interactions) -> None:
        raise NotImplementedError

    def _scores(self, query: Query) -> np.ndarray:
        """Scores of all items for every row of a validated ``query``: trained users, or new users'
        histories (a model that cannot fold a user in raises ``self._no_fold_in()`` for those)."""
        raise NotImplementedError

    def _no_fold_in(self) -> NotSupportedError:
        return NotSupportedError(f"{self.name} cannot score users it was not trained on")

    def _state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    # -- helpers ----------------------------------------------------------------------------------------
    def _require_fitted(self) -> sp.csr_matrix:
        if self._seen is None:
            raise NotFittedError(f"{self.name}: call fit() or load() first")
        return self._seen

    def _check_items(self, items: np.ndarray) -> np.ndarray:
        n = self._require_fitted().shape[1]
        items = np.atleast_1d(np.asarray(items, dtype=np.int64))
        if len(items) and (items.min() < 0 or items.max() >= n):
            bad = items[(items < 0) | (items >= n)][0]
            raise MosaicError(f"{self.name}: item index {bad} outside 0..{n - 1}")
        return items

    def _check_users(self, users: np.ndarray) -> np.ndarray:
        seen = self._require_fitted()
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        if len(users) and (users.min() < 0 or users.max() >= seen.shape[0]):
            bad = users[(users < 0) | (users >= seen.shape[0])][0]
            raise MosaicError(f"{self.name}: user index {bad} outside 0..{seen.shape[0] - 1}")
        return users

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump().items())
        return f"{type(self).__name__}({params})"


def _require_finite(train: Interactions, name: str) -> None:
    """Refuse events whose weights are NaN or infinite: one such value turns every factor into NaN and the
    lists empty, with no error (the loaders and the API refuse them; this guards the library path)."""
    bad = ~np.isfinite(train.weights)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise MosaicError(f"{name}: {int(bad.sum())} event weights are not finite numbers (the first: user "
                          f"{train.user_ids[train.users[first]]!r}, item {train.item_ids[train.items[first]]!r}, "
                          f"weight {train.weights[first]}); fix or drop them before training")


def csr_state(prefix: str, m: sp.csr_matrix) -> dict[str, np.ndarray]:
    """A CSR matrix as plain arrays for ``state.npz`` (keys prefixed, so a model can store several)."""
    return {f"{prefix}_data": m.data, f"{prefix}_indices": m.indices, f"{prefix}_indptr": m.indptr,
            f"{prefix}_shape": np.array(m.shape)}


def csr_from_state(prefix: str, state: dict[str, np.ndarray]) -> sp.csr_matrix:
    return sp.csr_matrix((state[f"{prefix}_data"], state[f"{prefix}_indices"], state[f"{prefix}_indptr"]),
                         shape=tuple(state[f"{prefix}_shape"]))


def mask_rows(scores: np.ndarray, seen_rows: sp.csr_matrix) -> None:
    """Set the scores of each row's seen items to -inf, in place."""
    rows = np.repeat(np.arange(seen_rows.shape[0]), np.diff(seen_rows.indptr))
    scores[rows, seen_rows.indices] = -np.inf


def top_k(scores: np.ndarray, k: int, tie_rank: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` largest entries per row, best first. Equal scores go to the lower
    index (across the cut too, which ``argpartition`` leaves to chance), or with ``tie_rank`` (a permutation
    of the columns) to the lower rank: evaluation breaks ties at random, so a model that cannot tell items
    apart scores as chance rather than as the catalog's order."""
    if min(k, scores.shape[1]) <= 0:
        return np.empty((scores.shape[0], 0), np.int64), np.empty((scores.shape[0], 0), scores.dtype)
    ties = np.empty(0, np.int64) if tie_rank is None else np.asarray(tie_rank, np.int64)
    return _kernels.top_k_rows(np.ascontiguousarray(scores), k, ties)
