"""``multitask``: one network over logged impressions that predicts several feedback signals at once (click,
long view, like as binary tasks, play time as a regression), in the impression's context.

Input of an impression: user and item embeddings, their element-wise product (the interaction a plain MLP
finds hard to learn), and an embedding per context feature (``features``: scenario, hour, weekday …; a value
seen fewer than ``min_events`` times, or a share ``context_dropout`` of training values, is "unknown", so
the model also scores requests whose context is partly unknown). The shared part is chosen by
``architecture``:

* ``shared-bottom``: one MLP feeds every task's tower (Caruana 1997);
* ``mmoe``: ``experts`` MLP experts mixed by a softmax gate per task (Ma et al. 2018);
* ``ple``: ``experts`` shared plus ``task_experts`` experts per task, each task's gate mixing the shared
  ones and its own (one CGC extraction layer of PLE, Tang et al. 2020);
* ``star``: scenario-aware: each layer's weights are a shared matrix times (element-wise) the scenario's own
  matrix, and its bias their sum (STAR, Sheng et al. 2021), so small scenarios start from the shared
  network and keep a part of their own; one tower per task on top.

``scenario_experts`` (with ``mmoe`` or ``ple``) adds experts of each scenario: an impression meets its own
scenario's experts beside the shared ones, and each task's gate (which sees the scenario too) decides how
much to take from them, so a scenario with little data can lean on the shared experts (PLE's task-specific
experts, applied to scenarios as in multi-scenario extensions of it).

``task_embeddings = k`` gives each task a user and an item embedding of its own (width k), which only its
tower reads (the two and their product, beside the shared part) and only its loss trains. A rare task's
signal is a small share of the gradient that shapes the shared embeddings (a like is about 2% of KuaiRand's
impressions, a click 45%), so a user's taste for liking, or a video's for being liked, has no room in them;
here it has its own.

Loss: the tasks' losses (BCE, or MSE on the standardised log1p target) summed with fixed ``weight`` s, or
with learned uncertainty weights (``loss_weighting = "uncertainty"``: Σ e^(−s_t)·L_t + s_t, Kendall et al.
2018). With ``attribute``, an auxiliary task asks the item embedding to predict the item's attributes (the
non-zero entries of that content feature, e.g. a multi-hot of its tags): item-feature generation, which
gives items with few impressions an embedding shaped by what they are.

Ranking score: a blend of the heads, Σ_t ``blend[t]``·p_t, where p_t is a binary head's probability or a
regression head's standardised prediction through a sigmoid (so every head is on (0, 1)). The heads
themselves are scored by a pair query naming the head (``Query.of_pairs(events, head=...)``, what the
impression metrics read).

Early stopping holds out the latest ``validation_share`` of the training impressions (a temporal cut, the
same kind as the test split), stops on the mean AUC of the binary tasks there and, with ``refit``, trains
the chosen number of epochs again on everything. With ``checkpoints = "per-task"`` each task is scored on
its own there (a binary task by its AUC, a regression task by Spearman's correlation), training goes on
while any task still improves, and each head is read from the epoch best for its task: tasks peak at
different epochs (like, a rare label, overfits first), and one epoch chosen on their mean trains some past
their best and stops others short. Scoring then runs one network per distinct chosen epoch.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.special import expit

from mosaicrec.data.schema import Interactions, context_floats
from mosaicrec.errors import ConfigError
from mosaicrec.models.base import BaseRecommender
from mosaicrec.models.neural.multitask_config import MultiTaskConfig
from mosaicrec.models.query import Query
from mosaicrec.models.registry import register
from mosaicrec.models.trainer import auc, train_epochs


def _torch():
    import torch

    return torch


def _network(n_users: int, n_items: int, vocab: list[int], n_scenarios: int, n_attr: int, cfg: MultiTaskConfig):
    """The torch network (:mod:`.multitask_net`, imported only when a model trains or scores)."""
    from mosaicrec.models.neural.multitask_net import MultiTaskNet

    return MultiTaskNet(n_users, n_items, vocab, n_scenarios, n_attr, cfg)


def _numpy(state: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in state.items()}


def _finite(x: float) -> float:
    return float(x) if np.isfinite(x) else 0.0


@register("multitask")
class MultiTask(BaseRecommender):
    """Shared-bottom / MMoE / PLE / STAR over impressions with several feedback tasks (see the module)."""

    Config = MultiTaskConfig
    uses_torch = True
    uses_context = True
    trains_on_impressions = True

    # -- features ---------------------------------------------------------------------------------------
    def _codes(self, events: Interactions) -> np.ndarray:
        """``n_events × n_features`` codes (0: unknown) of the events' context features."""
        return self._context_codes(events.context, events.n_events)

    def _context_codes(self, context: Mapping[str, Any], n: int) -> np.ndarray:
        """``n × n_features`` codes (0: unknown) of per-row context columns."""
        out = np.zeros((n, len(self.config.features)), np.int64)
        for k, f in enumerate(self.config.features):
            if f in context:
                table = self._lookup(k)
                out[:, k] = [table.get(v, 0) for v in np.asarray(context[f]).astype(str)]
        return out

    def _lookup(self, k: int) -> dict[str, int]:
        cache = self.__dict__.setdefault("_lookups", {})
        if k not in cache:
            cache[k] = {str(v): n + 1 for n, v in enumerate(self.vocab_[k])}
        return cache[k]

    def _scenario(self, codes: np.ndarray) -> np.ndarray:
        if self.config.context in self.config.features:
            return codes[:, self.config.features.index(self.config.context)]
        return np.zeros(len(codes), np.int64)

    def _fit(self, train: Interactions) -> None:
        cfg = self.config
        for t in cfg.tasks:
            if t.label not in train.context and t.label != "weight":
                have = ", ".join(sorted(train.context)) or "none"
                raise ConfigError(f"multitask: task {t.name!r} reads the event column {t.label!r}, which these "
                                  f"events lack (their context columns: {have})")
        missing = [f for f in cfg.features if f not in train.context]
        if missing:
            raise ConfigError(f"multitask: feature {missing[0]!r} is no context column of these events")
        self.vocab_ = []
        for f in cfg.features:
            values, counts = np.unique(np.asarray(train.context[f]).astype(str), return_counts=True)
            self.vocab_.append(values[(counts >= cfg.min_events) & (values != "")])
        self.__dict__.pop("_lookups", None)
        self.contexts_ = (self.vocab_[cfg.features.index(cfg.context)] if cfg.context in cfg.features
                          else np.array([], dtype=object)).astype(object)
        self.attr_targets_ = None
        if cfg.attribute is not None:
            if self.content_ is None or cfg.attribute not in self.content_.features:
                raise ConfigError(f"multitask: attribute {cfg.attribute!r} names no content feature "
                                  "(add it to the [content] section)")
            a = self.content_.features[cfg.attribute] != 0
            a = a[:, a.any(axis=0)]
            self.attr_targets_ = a.astype(np.float32)
        self.reg_stats_ = np.tile(np.array([0.0, 1.0], np.float32), (len(cfg.tasks), 1))
        raw = self._raw_targets(train)
        for k, t in enumerate(cfg.tasks):
            if t.kind == "regression":  # standardised, so one learning rate suits every task
                self.reg_stats_[k] = [raw[:, k].mean(), max(float(raw[:, k].std()), 1e-6)]
        self.history_ = []
        self._schedule(train)
        self.attr_targets_ = None  # a training input (items × attributes), not part of the fitted model

    def _schedule(self, train: Interactions, start: dict[str, np.ndarray] | None = None) -> None:
        """Train (from ``start`` weights, if given) with early stopping on the latest impressions, refit,
        and keep the weights."""
        torch = _torch()
        cfg = self.config
        old = torch.get_num_threads()
        torch.set_num_threads(cfg.threads or old)
        try:
            torch.manual_seed(cfg.seed)
            task_epochs, task_states = None, None
            if cfg.early_stopping:
                from mosaicrec.data.splits import temporal_split

                fit_part, val = temporal_split(train, cfg.validation_share)
                net, result, _ = self._train(fit_part, val, cfg.epochs, train.n_users, train.n_items, start)
                self.best_epoch_ = result.best_epoch
                if result.best_epochs is not None:
                    task_epochs, task_states = list(result.best_epochs), list(result.best_states)
                if cfg.refit:
                    torch.manual_seed(cfg.seed)
                    last = max(task_epochs) if task_epochs is not None else result.best_epoch
                    net, _, kept = self._train(train, None, last + 1, train.n_users, train.n_items, start,
                                               capture=set(task_epochs or ()))
                    if task_epochs is not None:
                        task_states = [kept[e] for e in task_epochs]
            else:
                net, _, _ = self._train(train, None, cfg.epochs, train.n_users, train.n_items, start)
        finally:
            torch.set_num_threads(old)
        net.eval()
        self._net = net
        self.weights_ = _numpy(net.state_dict())
        self._keep_heads(task_epochs, task_states)

    def _keep_heads(self, task_epochs: list[int] | None, task_states: list[Any] | None) -> None:
        """Per-task checkpoints: the distinct states (several tasks may share an epoch) and, per task, which
        one its head is read from."""
        self.task_epochs_ = task_epochs
        self.head_weights_, self.head_index_ = None, None
        self.__dict__.pop("_head_nets", None)
        self.__dict__.pop("_pair_cache", None)
        if task_states is None:
            return
        distinct: list[Any] = []
        index = []
        for state in task_states:
            j = next((n for n, d in enumerate(distinct) if d is state), None)
            if j is None:
                distinct.append(state)
                j = len(distinct) - 1
            index.append(j)
        self.head_weights_ = [_numpy(d) for d in distinct]
        self.head_index_ = np.asarray(index, np.int64)

    def fine_tune(self, train: Interactions, **changes: Any) -> MultiTask:
        """A new model that starts from this fitted one and trains on ``train`` (same id maps), e.g. a
        small scenario's impressions: transfer from what this model was fitted on. The vocabularies and
        target scaling stay this model's; ``changes`` override config values (e.g. ``epochs``, ``lr``).
        Early stopping also scores the start, so a fine-tuning that only hurts keeps the start."""
        self._require_fitted()
        if train.n_users != self.weights_["users.weight"].shape[0] or \
                train.n_items != self.weights_["items.weight"].shape[0]:
            raise ConfigError("fine_tune: the events must share the id maps of the fitted model")
        new = type(self)(self.config.model_copy(update=changes))
        for key in ("vocab_", "contexts_", "reg_stats_", "user_ids", "item_ids"):
            setattr(new, key, getattr(self, key))
        new.attr_targets_ = None
        new._seen = train.binary
        new.history_ = []
        new._schedule(train, start=self.weights_)
        return new

    def _train(self, part: Interactions, val: Interactions | None, epochs: int, n_users: int, n_items: int,
               start: dict[str, np.ndarray] | None = None, capture: set[int] = frozenset()):
        """Train one network; returns it, the loop's result and the states after each epoch in
        ``capture`` (-1: the start)."""
        torch = _torch()
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        n_attr = 0 if self.attr_targets_ is None else self.attr_targets_.shape[1]
        net = _network(n_users, n_items, [len(v) for v in self.vocab_], len(self.contexts_), n_attr, cfg)
        if start is not None:
            net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in start.items() if not k.startswith("attr.")},
                                strict=False)

        def snapshot() -> dict[str, Any]:
            return {k: v.detach().clone() for k, v in net.state_dict().items()}

        kept = {-1: snapshot()} if -1 in capture else {}
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        u_all = torch.from_numpy(part.users.astype(np.int64))
        i_all = torch.from_numpy(part.items.astype(np.int64))
        f_all = self._codes(part)
        y_all = torch.from_numpy(self._targets(part))
        binary = torch.tensor([t.kind == "binary" for t in cfg.tasks])
        fixed = torch.tensor([t.weight for t in cfg.tasks], dtype=torch.float32)
        attr = None if self.attr_targets_ is None else torch.from_numpy(self.attr_targets_)
        attr_items = None if attr is None else np.flatnonzero(self.attr_targets_.any(axis=1))

        def run_epoch(epoch: int) -> dict[str, Any]:
            net.train()
            t0, total = time.perf_counter(), 0.0
            perm = rng.permutation(len(u_all))
            f = f_all.copy()
            if cfg.context_dropout:
                f[rng.random(f.shape) < cfg.context_dropout] = 0
            f = torch.from_numpy(f)
            scen = torch.from_numpy(self._scenario(f.numpy()))
            per_task = torch.zeros(len(cfg.tasks))
            for s in range(0, len(perm), cfg.batch_size):
                b = torch.from_numpy(perm[s:s + cfg.batch_size])
                loss, losses = net.loss(net(u_all[b], i_all[b], f[b], scen[b]), y_all[b], binary, fixed)
                if attr is not None and cfg.attribute_weight > 0:
                    items = torch.from_numpy(rng.choice(attr_items, min(len(attr_items), cfg.batch_size)))
                    loss = loss + cfg.attribute_weight * net.attribute_loss(items, attr[items])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(b)
                per_task += losses.detach() * len(b)
            record = {"epoch": epoch, "loss": total / len(perm), "seconds": time.perf_counter() - t0,
                      "refit": val is None and cfg.early_stopping > 0}
            record.update({f"loss {t.name}": float(v) / len(perm) for t, v in zip(cfg.tasks, per_task)})
            if epoch in capture:
                kept[epoch] = snapshot()
            return record

        def validate() -> float | list[float]:
            from scipy.stats import spearmanr

            net.eval()
            out = self._forward(net, val)
            y = self._targets(val)
            if cfg.checkpoints == "per-task":
                # a task without both classes (or a constant target) in the held-out part scores 0: it
                # then never improves, and its head comes from the first epoch
                return [_finite(auc(y[:, k], out[:, k]) if t.kind == "binary" else spearmanr(y[:, k], out[:, k]).statistic)
                        for k, t in enumerate(cfg.tasks)]
            aucs = [auc(y[:, k], out[:, k]) for k, t in enumerate(cfg.tasks) if t.kind == "binary"]
            aucs = [a for a in aucs if np.isfinite(a)]
            return float(np.mean(aucs)) if aucs else -float(np.square(out - y).mean())

        result = train_epochs(epochs, run_epoch, self._epoch_done,
                              validate=validate if val is not None else None, patience=cfg.early_stopping,
                              checkpoint=snapshot, restore=net.load_state_dict, validate_start=start is not None)
        return net, result, kept

    def _raw_targets(self, events: Interactions) -> np.ndarray:
        """``n_events × n_tasks``: binary labels as 0/1, regression targets (log1p where asked)."""
        cols = []
        for t in self.config.tasks:
            y = (events.weights.astype(np.float64) if t.label == "weight" and "weight" not in events.context
                 else context_floats(events, t.label))
            if t.kind == "binary":
                y = (y > 0).astype(np.float64)
            elif t.log:
                y = np.log1p(np.maximum(y, 0.0))
            cols.append(y)
        return np.stack(cols, axis=1)

    def _targets(self, events: Interactions) -> np.ndarray:
        """The training targets: :meth:`_raw_targets` with regression ones standardised."""
        return ((self._raw_targets(events) - self.reg_stats_[:, 0]) / self.reg_stats_[:, 1]).astype(np.float32)

    # -- scoring ----------------------------------------------------------------------------------------
    def _build(self, weights: dict[str, np.ndarray]):
        torch = _torch()
        n_attr = weights["attr.weight"].shape[0] if "attr.weight" in weights else 0
        net = _network(weights["users.weight"].shape[0], weights["items.weight"].shape[0],
                       [len(v) for v in self.vocab_], len(self.contexts_), n_attr, self.config)
        net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        net.eval()
        return net

    def _network_now(self):
        net = self.__dict__.get("_net")
        if net is None:
            net = self._net = self._build(self.weights_)
        return net

    def _run(self, users: np.ndarray, items: np.ndarray, codes: np.ndarray, net=None) -> np.ndarray:
        """Raw outputs (logits / standardised values), ``n × n_tasks``, in batches; with per-task
        checkpoints (and no ``net`` given), each task's column from its own checkpoint."""
        torch = _torch()
        if net is None and getattr(self, "head_index_", None) is not None:
            nets = self.__dict__.get("_head_nets")
            if nets is None:
                nets = self._head_nets = [self._build(w) for w in self.head_weights_]
            out = np.zeros((len(users), len(self.config.tasks)), np.float32)
            for j, head_net in enumerate(nets):
                cols = np.flatnonzero(self.head_index_ == j)
                out[:, cols] = self._run(users, items, codes, head_net)[:, cols]
            return out
        net = net if net is not None else self._network_now()
        out = np.zeros((len(users), len(self.config.tasks)), np.float32)
        scen = self._scenario(codes)
        with torch.no_grad():
            for s in range(0, len(users), 65_536):
                sl = slice(s, s + 65_536)
                out[sl] = net(torch.from_numpy(users[sl].astype(np.int64)), torch.from_numpy(items[sl].astype(np.int64)),
                              torch.from_numpy(codes[sl]), torch.from_numpy(scen[sl])).numpy()
        return out

    def _forward(self, net, events: Interactions) -> np.ndarray:
        return self._run(events.users, events.items, self._codes(events), net)

    @property
    def heads(self) -> tuple[str, ...]:  # type: ignore[override]
        """The ranking blend, each task by name and by its label column (what impression metrics ask)."""
        names = [t.name for t in self.config.tasks] + [t.label for t in self.config.tasks]
        return ("score", *dict.fromkeys(n for n in names if n != "score"))

    def _head_outputs(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        """Each task's output on (0, 1) (a probability, or a regression's standardised value through a
        sigmoid) and ``"score"``: their blend."""
        out = {t.name: expit(raw[:, k]) for k, t in enumerate(self.config.tasks)}
        blend = sum(w * out[name] for name, w in self.config.blend.items())
        return {**{k: v.astype(np.float32) for k, v in out.items()}, "score": np.asarray(blend, np.float32)}

    def _pair_scores(self, query: Query, block: int = 1024) -> np.ndarray:
        """The head ``query.head`` for each (user, item) pair in its row's context. Regression heads: the
        standardised prediction (an order, not seconds). The network runs once for the pairs; the other
        heads of the same pairs (the impression metrics ask for each) reuse that run."""
        if query.new_users:
            raise self._no_fold_in()
        key = (id(query.users), id(query.items), id(query.context))
        hit = self.__dict__.get("_pair_cache")
        if hit is not None and hit[0] == key:
            raw = hit[2]
        else:
            raw = self._run(query.users, query.items, self._query_features(query))
            self._pair_cache = (key, (query.users, query.items, query.context), raw)  # refs keep the ids unique
        out = self._head_outputs(raw)
        for k, t in enumerate(self.config.tasks):
            if t.kind == "regression":
                out[t.name] = raw[:, k]
        for t in self.config.tasks:
            out.setdefault(t.label, out[t.name])
        return out[query.head]

    def _query_features(self, query: Query) -> np.ndarray:
        """Feature codes per row: an event's whole context (a mapping) gives every feature; one context
        value (or one per row) gives the scenario feature alone."""
        if isinstance(query.context, Mapping):
            return self._context_codes(query.context, len(query))
        codes = np.zeros((len(query), len(self.config.features)), np.int64)
        if self.config.context in self.config.features:
            codes[:, self.config.features.index(self.config.context)] = self.query_codes(query)
        return codes

    def _scores(self, query: Query) -> np.ndarray:
        if query.new_users:
            raise self._no_fold_in()
        users = self._check_users(query.users)
        n_items = self.weights_["items.weight"].shape[0]
        codes = self._query_features(query)
        out = np.empty((len(users), n_items), np.float32)
        step = max(1, 65_536 // n_items)  # rows of (user, item) pairs per forward pass
        for s in range(0, len(users), step):
            n = len(users[s:s + step])
            raw = self._run(np.repeat(users[s:s + step], n_items), np.tile(np.arange(n_items), n),
                            np.repeat(codes[s:s + step], n_items, axis=0))
            out[s:s + n] = self._head_outputs(raw)["score"].reshape(n, n_items)
        return out

    def _state(self) -> dict[str, np.ndarray]:
        heads = {}
        if getattr(self, "head_index_", None) is not None:
            heads = {"head_index": self.head_index_, "task_epochs": np.asarray(self.task_epochs_, np.int64),
                     **{f"head{j}.{k}": v for j, w in enumerate(self.head_weights_) for k, v in w.items()}}
        return {"reg_stats": self.reg_stats_, "contexts": self.contexts_.astype(str),
                **{f"vocab.{k}": np.asarray(v).astype(str) for k, v in enumerate(self.vocab_)},
                **{f"net.{k}": v for k, v in self.weights_.items()}, **heads}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.reg_stats_ = state["reg_stats"]
        self.contexts_ = state["contexts"].astype(object)
        self.vocab_ = [state[f"vocab.{k}"].astype(object) for k in range(len(self.config.features))]
        self.weights_ = {k[4:]: v for k, v in state.items() if k.startswith("net.")}
        self._net = None
        self.__dict__.pop("_lookups", None)
        self.__dict__.pop("_head_nets", None)
        self.head_weights_, self.head_index_, self.task_epochs_ = None, None, None
        if "head_index" in state:
            self.head_index_ = state["head_index"].astype(np.int64)
            self.task_epochs_ = [int(e) for e in state["task_epochs"]]
            self.head_weights_ = [{k[len(f"head{j}."):]: v for k, v in state.items() if k.startswith(f"head{j}.")}
                                  for j in range(int(self.head_index_.max()) + 1)]
