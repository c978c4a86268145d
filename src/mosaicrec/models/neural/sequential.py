"""``sasrec``: a SASRec-style transformer over each user's ordered history (Kang & McAuley 2018).

The user is the sequence of items they interacted with, oldest first; a causal transformer reads it and its
last position's output ``h`` scores every item as ``h·e_i``, where ``e_i`` is the same item representation
the sequence is built from. That representation is chosen by ``items``:

* ``id``: an embedding per item (the original SASRec);
* ``content``: a learned projection of the item's content (the fixed concatenation of its modalities), so
  the model holds no per-item parameter and scores any item with content, also of a catalog it never saw;
* ``both``: the sum of the two.

Training predicts every position's next item from the positions before it (full softmax cross-entropy over
the catalog). A history longer than ``max_len`` is cut into windows from its end, so every event is a target
once and the latest window carries the most recent context. Early stopping holds out each user's last
training event (leave-last-out inside the training part) and, with ``refit``, trains the chosen number of
epochs again on everything.

Padding is on the left and is never attended to: a real position attends only to itself and the real
positions before it, so a score does not depend on how much padding a batch needed (tested), and no position
sees a later event (tested).

Scoring: trained users are their training sequence (the last ``max_len`` events); a :class:`Query` history
is ordered by its ``timestamps`` (the service passes the user's live events with their times), so a user's
latest events are the sequence's end.

With ``context`` (an event-context column, e.g. ``"scenario"``: the app surface) the model is a context
model R(u, i, c): the query at each position is ``h + c``, with ``c`` a learned vector of the context the
*next* event happened in, which a request knows (the surface asking for a list). So a position's score reads
the events up to it and the context of the event it predicts, never a later event or its item. The shift is
added after the transformer, so the sequence encoding is the same in every context; a share of the training
targets (``context_dropout``) drop their context, so a request without one, or with a value never seen in
training, gets the plain model's list.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from mosaicrec.data.schema import Interactions
from mosaicrec.errors import ConfigError
from mosaicrec.fusion import FusionConfig, concat_features, select_modalities
from mosaicrec.models.base import BaseRecommender, ModelConfig
from mosaicrec.models.context import context_values
from mosaicrec.models.query import Query
from mosaicrec.models.registry import register
from mosaicrec.models.trainer import recall_at, train_epochs

ItemRepresentation = Literal["id", "content", "both"]
_NET_LOCK = threading.Lock()  # the scoring network is built on first use, possibly by two threads at once


class SASRecConfig(ModelConfig):
    items: ItemRepresentation = Field("id", description="item representation: 'id' embeddings, 'content' "
                                      "(a projection of the item's fused content: scores unseen items and "
                                      "other catalogs) or 'both' (their sum)")
    dim: int = Field(64, ge=4, le=1024, description="width of item and hidden vectors")
    max_len: int = Field(50, ge=2, le=1000, description="events of a history the model reads (the latest)")
    layers: int = Field(2, ge=1, le=12)
    heads: int = Field(1, ge=1, le=16, description="attention heads (must divide dim)")
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    epochs: int = Field(200, ge=1, le=10_000)
    lr: float = Field(2e-3, gt=0, le=1)
    weight_decay: float = Field(0.0, ge=0, le=1, description="AdamW weight decay")
    batch_size: int = Field(128, ge=1, le=65_536, description="windows per batch")
    early_stopping: int = Field(5, ge=0, le=1000, description="patience in epochs on validation Recall@10 "
                                "(each user's last training event held out); 0: train all epochs")
    refit: bool = Field(True, description="with early_stopping: train the chosen number of epochs again on "
                        "all events, so the final model reads each user's most recent event too")
    fusion: FusionConfig = Field(default_factory=FusionConfig, description="which modalities (and weights) "
                                 "make the content representation")
    context: str | None = Field(None, min_length=1, max_length=64, description="event-context column "
                                "(e.g. 'scenario'): the query is shifted by the context of the predicted "
                                "event, which a request names; None: a context-free model")
    context_dropout: float = Field(0.1, ge=0.0, lt=1.0, description="with context: share of training targets "
                                   "read without it, so the plain model serves a request without a context")
    min_context_events: int = Field(20, ge=1, le=10**9, description="context values with fewer training "
                                    "events are ignored (read as no context)")
    seed: int = 42
    threads: int = Field(0, ge=0, le=256, description="torch threads (0: torch's default)")


def _torch():
    import torch  # loads only when the model trains or scores

    return torch


def user_sequences(x: Interactions, values: np.ndarray | None = None) -> list[np.ndarray]:
    """Each user's item indices in time order (ties keep the log's order); an empty array for a user
    without events. With ``values`` (one per event), those values in the same order instead."""
    order = np.lexsort((np.arange(x.n_events), x.timestamps, x.users))
    counts = np.bincount(x.users, minlength=x.n_users)
    values = x.items if values is None else values
    return np.split(np.asarray(values)[order].astype(np.int64), np.cumsum(counts)[:-1])


def history_sequences(history: sp.csr_matrix, timestamps: sp.csr_matrix | None) -> list[np.ndarray]:
    """The items of each history row ordered by their times (without ``timestamps``: by item index, which
    carries no order; the service and the evaluation always pass times)."""
    history = sp.csr_matrix(history)
    out = []
    for r in range(history.shape[0]):
        items = history.indices[history.indptr[r]:history.indptr[r + 1]].astype(np.int64)
        if timestamps is not None and len(items):
            row = sp.csr_matrix(timestamps[r])
            when = dict(zip(row.indices.tolist(), row.data.tolist()))
            items = items[np.argsort([when.get(int(i), 0.0) for i in items], kind="stable")]
        out.append(items)
    return out


def pad_left(seqs: list[np.ndarray], length: int) -> np.ndarray:
    """Rows of the last ``length`` items + 1 (0 is padding), left-padded."""
    out = np.zeros((len(seqs), length), np.int64)
    for r, s in enumerate(seqs):
        s = s[-length:]
        if len(s):
            out[r, length - len(s):] = s + 1
    return out


def _cuts(length: int, max_len: int) -> list[tuple[int, int]]:
    """(start, end) of the windows of a sequence of ``length`` events, from its end: ``max_len``
    transitions each, overlapping by one event, so each event after the first is a target once."""
    out, end = [], length
    while end >= 2:
        start = max(0, end - max_len - 1)
        out.append((start, end))
        end = start + 1 if start > 0 else 0
    return out


def windows(seqs: list[np.ndarray], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets), each ``n_windows × max_len`` (0: padding, else item + 1): every sequence cut from
    its end into windows of ``max_len`` transitions, so each event after a user's first is a target once."""
    ins, outs = [], []
    for s in seqs:
        for start, end in _cuts(len(s), max_len):
            ins.append(s[start:end - 1]), outs.append(s[start + 1:end])
    return pad_left(ins, max_len), pad_left(outs, max_len)


def target_codes(codes: list[np.ndarray], max_len: int) -> np.ndarray:
    """The context code (0: none) of each target of :func:`windows` over sequences of the same lengths,
    aligned with its targets (padding: 0)."""
    outs = [c[start + 1:end] for c in codes for start, end in _cuts(len(c), max_len)]
    return pad_left([o - 1 for o in outs], max_len)  # pad_left adds 1: code 0 stays 0, like padding


def _network(n_items: int, content_dim: int, cfg: SASRecConfig, n_contexts: int = 0):
    torch = _torch()
    nn = torch.nn

    class SASRecNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.item_emb = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0) if cfg.items != "content" else None
            if self.item_emb is not None:
                nn.init.normal_(self.item_emb.weight, std=cfg.dim ** -0.5)
                with torch.no_grad():
                    self.item_emb.weight[0].zero_()
            self.content_proj = nn.Linear(content_dim, cfg.dim) if cfg.items != "id" else None
            self.pos_emb = nn.Embedding(cfg.max_len, cfg.dim)
            layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, dim_feedforward=cfg.dim * 4,
                                               dropout=cfg.dropout, activation="gelu", batch_first=True,
                                               norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(cfg.dim)
            self.drop = nn.Dropout(cfg.dropout)
            self.register_buffer("content", torch.zeros(n_items + 1, max(content_dim, 1)), persistent=False)
            # row 0 (no context, or one too rare) stays zero: the context-free query
            self.context_emb = nn.Embedding(n_contexts + 1, cfg.dim, padding_idx=0) if n_contexts else None
            if self.context_emb is not None:
                nn.init.zeros_(self.context_emb.weight)

        def shift(self, h, codes):
            """The queries: hidden states ``h`` shifted by their target's context (``codes``, 0: none)."""
            return h if self.context_emb is None else h + self.context_emb(codes)

        def table(self):
            """Item representations, row 0 the padding (zero)."""
            out = 0
            if self.item_emb is not None:
                out = self.item_emb.weight
            if self.content_proj is not None:
                proj = self.content_proj(self.content)
                mask = torch.ones(proj.shape[0], 1, device=proj.device)
                mask[0] = 0.0
                out = out + proj * mask
            return out

        def forward(self, seq, table=None):
            """Hidden state at every position (``batch × max_len × dim``)."""
            table = self.table() if table is None else table
            real = seq > 0
            x = table[seq] * (cfg.dim ** 0.5) + self.pos_emb.weight[-seq.shape[1]:].unsqueeze(0)
            x = self.drop(x) * real.unsqueeze(-1)
            length = seq.shape[1]
            causal = torch.ones(length, length, dtype=torch.bool, device=seq.device).tril()
            # key j is visible to query i iff j ≤ i and j is a real event; a padding row sees itself only,
            # so no row is fully masked (which would make NaNs) and padding never reaches a real row
            allowed = causal.unsqueeze(0) & real.unsqueeze(1)
            allowed = allowed | torch.eye(length, dtype=torch.bool, device=seq.device).unsqueeze(0)
            mask = torch.zeros(allowed.shape, dtype=x.dtype, device=seq.device).masked_fill(~allowed, float("-inf"))
            mask = mask.repeat_interleave(cfg.heads, dim=0)
            h = self.encoder(x, mask=mask)
            return self.norm(h) * real.unsqueeze(-1)

    return SASRecNet()


@register("sasrec")
class SASRec(BaseRecommender):
    """Next-item prediction by a causal transformer over the user's ordered history (see the module)."""

    Config = SASRecConfig
    uses_torch = True

    @property  # type: ignore[override]
    def uses_context(self) -> bool:
        """A context model only when ``context`` names an event-context column."""
        return self.config.context is not None

    def _event_codes(self, x: Interactions) -> np.ndarray | None:
        """Each event's context code (1 + position in ``contexts_``; 0: none or too rare), or ``None``
        for a context-free model."""
        if self.config.context is None:
            return None
        return self.context_codes(np.asarray(x.context[self.config.context]).astype(str), x.n_events)

    def _fit(self, train: Interactions) -> None:
        torch = _torch()
        cfg = self.config
        if cfg.dim % cfg.heads:
            raise ConfigError(f"sasrec: heads ({cfg.heads}) must divide dim ({cfg.dim})")
        if cfg.items != "id":
            if self.content_ is None:
                raise ConfigError(f"sasrec with items={cfg.items!r} reads item content: pass content= (from "
                                  "`mosaicrec encode`) or add a [content] section to the config")
            mods = select_modalities(self.content_, cfg.fusion.modalities, self.name)
            feats = concat_features(self.content_, mods, cfg.fusion.weights, cfg.fusion.center)
        else:
            feats = np.zeros((train.n_items, 0), np.float32)
        self.content_features_ = feats.astype(np.float32)
        self.history_ = []
        if cfg.context is not None:
            self.contexts_, _ = context_values(train, cfg.context, cfg.min_context_events)
        old_threads = torch.get_num_threads()
        torch.set_num_threads(cfg.threads or old_threads)
        try:
            torch.manual_seed(cfg.seed)
            if cfg.early_stopping:
                from mosaicrec.data.splits import leave_last_out

                fit_part, val = leave_last_out(train)
                net, result = self._train(fit_part, val, cfg.epochs)
                self.best_epoch_ = result.best_epoch
                if cfg.refit:
                    torch.manual_seed(cfg.seed)
                    net, _ = self._train(train, None, result.best_epoch + 1)
            else:
                net, _ = self._train(train, None, cfg.epochs)
            self._keep(net, user_sequences(train))
        finally:
            torch.set_num_threads(old_threads)

    def _new_net(self, n_items: int):
        torch = _torch()
        net = _network(n_items, self.content_features_.shape[1], self.config,
                       len(self.contexts_) if self.uses_context else 0)
        if self.content_features_.shape[1]:
            net.content[1:] = torch.from_numpy(self.content_features_)
        return net

    def _train(self, part: Interactions, val: Interactions | None, epochs: int):
        torch = _torch()
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        net = self._new_net(part.n_items)
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        seqs = user_sequences(part)
        inputs, targets = windows(seqs, cfg.max_len)
        if not len(inputs):
            raise ConfigError("sasrec: no user has two training events, so there is no transition to learn")
        codes = self._event_codes(part)
        target_ctx = target_codes(user_sequences(part, codes), cfg.max_len) if codes is not None else None
        last = pad_left(seqs, cfg.max_len)
        users_val = np.flatnonzero(np.diff(val.binary.indptr) > 0) if val is not None else None
        val_ctx = np.zeros(part.n_users, np.int64)
        if val is not None and codes is not None:
            val_ctx[val.users] = self._event_codes(val)  # the held-out event's context, as a request names it
        order = np.arange(len(inputs))

        def run_epoch(epoch: int) -> dict[str, Any]:
            net.train()
            t0, total, n = time.perf_counter(), 0.0, 0
            for s in range(0, len(inputs), cfg.batch_size):
                b = order[s:s + cfg.batch_size]
                seq, tgt = torch.from_numpy(inputs[b]), torch.from_numpy(targets[b])
                table = net.table()
                h = net(seq, table)
                real = tgt > 0
                if target_ctx is not None:
                    ctx = target_ctx[b] * (rng.random(target_ctx[b].shape) >= cfg.context_dropout)
                    h = net.shift(h, torch.from_numpy(ctx))
                logits = h[real] @ table[1:].T
                loss = torch.nn.functional.cross_entropy(logits, tgt[real] - 1)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * int(real.sum())
                n += int(real.sum())
            return {"epoch": epoch, "loss": total / max(n, 1), "seconds": time.perf_counter() - t0,
                    "refit": val is None and cfg.early_stopping > 0}

        def shuffled(epoch: int) -> dict[str, Any]:
            nonlocal order
            order = rng.permutation(len(inputs))
            return run_epoch(epoch)

        def validate() -> float:
            net.eval()
            with torch.no_grad():
                table = net.table()
                h = net.shift(net(torch.from_numpy(last[users_val]), table)[:, -1],
                              torch.from_numpy(val_ctx[users_val]))
                H = np.zeros((part.n_users, cfg.dim), np.float32)
                H[users_val] = h.numpy()
                V = table[1:].numpy()
            return recall_at(H, V, None, part.binary, val.binary, k=10, seed=cfg.seed)

        result = train_epochs(epochs, shuffled, self._epoch_done,
                              validate=validate if val is not None else None, patience=cfg.early_stopping,
                              checkpoint=lambda: {k: v.detach().clone() for k, v in net.state_dict().items()},
                              restore=net.load_state_dict)
        return net, result

    def _keep(self, net, seqs: list[np.ndarray]) -> None:
        """Keep what scoring needs as arrays: the network's weights, the item table and the users'
        sequences (the last ``max_len`` training events)."""
        torch = _torch()
        net.eval()
        with torch.no_grad():
            self.table_ = net.table()[1:].numpy().astype(np.float32)
        self.weights_ = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
        self.sequences_ = pad_left(seqs, self.config.max_len)
        self._net = None

    # -- scoring ----------------------------------------------------------------------------------------
    def item_factors(self) -> tuple[np.ndarray, np.ndarray | None]:
        return self.table_, None

    def query_factors(self, query: Query) -> np.ndarray:
        if query.new_users:
            seqs = pad_left(history_sequences(query.history, query.timestamps), self.config.max_len)
        else:
            seqs = self.sequences_[self._check_users(query.users)]
        out = self.encode(seqs)
        if self.uses_context:
            out += self.weights_["context_emb.weight"][self.query_codes(query)]
        return out

    def encode(self, seqs: np.ndarray) -> np.ndarray:
        """The last position's hidden state of left-padded sequences (``n × max_len``, 0: padding, else
        item + 1): the user vectors. An empty sequence gets a zero vector (no preference)."""
        torch = _torch()
        net = self.__dict__.get("_net")
        if net is None:
            with _NET_LOCK:  # two first requests at once build one network, not two half-loaded ones
                net = self.__dict__.get("_net")
                if net is None:
                    net = self._new_net(self.table_.shape[0])
                    net.load_state_dict({k: torch.from_numpy(v) for k, v in self.weights_.items()})
                    net.eval()
                    self._net = net
        out = np.zeros((len(seqs), self.config.dim), np.float32)
        table = torch.from_numpy(np.vstack([np.zeros((1, self.table_.shape[1]), np.float32), self.table_]))
        with torch.no_grad():
            for s in range(0, len(seqs), 1024):
                part = torch.from_numpy(np.ascontiguousarray(seqs[s:s + 1024]))
                out[s:s + len(part)] = net(part, table)[:, -1].numpy()
        return out

    def _scores(self, query: Query) -> np.ndarray:
        return self.query_factors(query) @ self.table_.T

    def _state(self) -> dict[str, np.ndarray]:
        state = {"table": self.table_, "sequences": self.sequences_, "content": self.content_features_,
                 **{f"net.{k}": v for k, v in self.weights_.items()}}
        if self.uses_context:
            state["contexts"] = self.contexts_.astype(str)
        return state

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.table_, self.sequences_ = state["table"], state["sequences"]
        self.content_features_ = state["content"]
        self.weights_ = {k[4:]: v for k, v in state.items() if k.startswith("net.")}
        if self.uses_context:
            self.contexts_ = state["contexts"].astype(object)
        self._net = None
