"""Shared parts of the neural models: the config, the BPR training loop (on :mod:`mosaicrec.models.trainer`),
numpy scoring and the torch base network every family builds on."""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np
from pydantic import Field

from mosaicrec.data.schema import Interactions
from mosaicrec.fusion import FusionConfig, modality_matrix, select_modalities
from mosaicrec.models.base import BaseRecommender, ModelConfig
from mosaicrec.models.mf import BPRConfig, FactorScoring
from mosaicrec.models.trainer import recall_at, train_epochs


_BPR = BPRConfig.model_fields  # the 'bpr' start's defaults are BPR's own


class NeuralConfig(ModelConfig):
    dim: int = Field(64, ge=2, description="width of user and item vectors")
    epochs: int = Field(30, ge=1)
    lr: float = Field(1e-3, gt=0, description="Adam's rate for the content and other new parts (the BPR-started "
                      "ids take init_lr_scale of it): a fine-tuning rate, since the start already ranks well")
    reg: float = Field(1e-4, ge=0, description="L2 weight on the batch's user and item vectors")
    batch_size: int = Field(2048, ge=1)
    seed: int = 42
    threads: int = Field(0, ge=0, description="torch threads (0: measured: the first batches run with all "
                         "cores and with one, and the faster setting trains the rest)")
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    pretrain_epochs: int = Field(0, ge=0, description="cross-modal InfoNCE pre-training of the fusion")
    align_weight: float = Field(0.0, ge=0, description="weight of content↔collaborative InfoNCE in the loss")
    temperature: float = Field(0.2, gt=0)
    early_stopping: int = Field(3, ge=0, description="patience in epochs: hold out validation_share of each "
                                "user's training events, stop when their Recall@20 has not improved for this "
                                "many epochs and keep the best epoch (with the BPR start, the start itself is "
                                "a candidate: no epoch better than BPR on validation keeps BPR's vectors); "
                                "with refit, train that many epochs again on all events (0: train all "
                                "epochs on everything)")
    validation_share: float = Field(0.1, gt=0, lt=1, description="with early_stopping: events held out")
    init: Literal["bpr", "random"] = Field("bpr", description="'bpr': start the collaborative (id) vectors "
                                           "from a BPR fit on the same events (seconds, by the numba kernel) "
                                           "so training refines a strong solution and content adds to it "
                                           "(the content part still trains: new items need it). 'random': "
                                           "from scratch")
    init_iterations: int = Field(_BPR["iterations"].default, ge=1,
                                 description="BPR epochs of the 'bpr' start (BPR's default)")
    init_learning_rate: float = Field(_BPR["learning_rate"].default, gt=0, le=10, description="SGD rate of "
                                      "the 'bpr' start (BPR's default; set it to a tuned BPR's, since the start "
                                      "is what a model keeps when no epoch beats it)")
    init_regularization: float = Field(_BPR["regularization"].default, ge=0, le=100,
                                       description="L2 of the 'bpr' start (BPR's default)")
    init_lr_scale: float = Field(0.1, gt=0, le=1, description="learning rate of the started (id) vectors, "
                                 "as a share of lr")
    refit: bool = Field(True, description="with early_stopping: train the chosen number of epochs again on "
                        "all events (validation ones included), as the final model")
    workers: int = Field(0, ge=0, le=256, description="train data-parallel on this many Ray Train workers "
                         "(torch DDP, gloo): each takes its share of every batch and gradients are averaged, "
                         "so a step is the one-process step (mosaicrec.models.neural.distributed); 0: here")
    ray_address: str | None = Field(None, description="Ray cluster for workers > 0 [default: "
                                    "$MOSAICREC_RAY_ADDRESS, else a local cluster]")


def _torch():
    import torch  # torch loads only when a neural model trains

    return torch


class _NeuralModel(FactorScoring, BaseRecommender):
    """Shared BPR training loop and numpy scoring; subclasses build the network."""

    Config = NeuralConfig
    needs_content = True
    uses_torch = True
    _state_keys: tuple[str, ...] = ("U", "V", "b")

    #: (rank, world size) inside a data-parallel worker (set by mosaicrec.models.neural.distributed)
    _ddp: tuple[int, int] | None = None

    def _fit(self, train: Interactions) -> None:
        torch = _torch()
        cfg = self.config
        if cfg.workers and self._ddp is None:
            from mosaicrec.models.neural.distributed import fit_data_parallel

            state, self.history_ = fit_data_parallel(self, train)
            best = state.pop("best_epoch", None)
            if best is not None:
                self.best_epoch_ = int(best[0])
            for k, v in state.items():
                setattr(self, k + "_", np.ascontiguousarray(v, dtype=np.float32))
            self._state_keys = tuple(state)
            return
        torch.manual_seed(cfg.seed)
        old_threads = torch.get_num_threads()
        torch.set_num_threads(cfg.threads or old_threads)
        self.history_: list[dict[str, Any]] = []
        self.threads_ = cfg.threads or (1 if old_threads == 1 else 0)
        try:
            mods = select_modalities(self.content_, cfg.fusion.modalities, self.name)
            feats = {m: modality_matrix(self.content_, m, cfg.fusion.center) for m in mods}
            masks = {m: self.content_.masks[m].copy() for m in mods}
            if cfg.early_stopping:
                from mosaicrec.data.splits import random_holdout

                fit_part, val = random_holdout(train, cfg.validation_share, cfg.seed)
                net, result = self._train(fit_part, val, cfg.epochs, feats, masks)
                self.best_epoch_ = result.best_epoch
                if cfg.refit:
                    # the held-out share is 10% of the events: measured at 1M events, leaving it out of
                    # the final model cost more than content added, so the chosen number of epochs is
                    # trained again on everything
                    torch.manual_seed(cfg.seed)
                    net, _ = self._train(train, None, result.best_epoch + 1, feats, masks)
            else:
                net, _ = self._train(train, None, cfg.epochs, feats, masks)
            net.eval()
            with torch.no_grad():
                state = net.export()
            U, V = state["U"], state["V"]
            users, items = train.users.astype(np.int64), train.items.astype(np.int64)
            state["fold_target"] = np.array([np.mean(np.einsum("ij,ij->i", U[users], V[items]))])
            for k, v in state.items():
                setattr(self, k + "_", np.ascontiguousarray(v, dtype=np.float32))
            self._state_keys = tuple(state)
        finally:
            torch.set_num_threads(old_threads)

    def _train(self, part: Interactions, val: Interactions | None, epochs: int, feats: dict[str, np.ndarray],
               masks: dict[str, np.ndarray]):
        """Build the network on ``part`` and train it up to ``epochs`` epochs (early stopping on ``val``)."""
        torch = _torch()
        from mosaicrec.fusion.learned import pretrain_alignment
        from mosaicrec.models.neural import objectives

        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        X = part.binary
        warm = np.asarray(X.sum(axis=0)).ravel() > 0
        net = self._build(part, feats, masks, warm)
        started = self._bpr_start(net, part)
        self.pretrain_history_ = pretrain_alignment(net.fusion, feats, masks, cfg.pretrain_epochs,
                                                    temperature=cfg.temperature, seed=cfg.seed)
        ids = {id(p) for p in started}
        groups = [{"params": [p for p in net.parameters() if id(p) not in ids], "lr": cfg.lr}]
        if started:  # a pre-trained start is refined slowly, or the first epochs undo it (measured)
            groups.append({"params": started, "lr": cfg.lr * cfg.init_lr_scale})
        opt = torch.optim.Adam(groups)
        step_fn, rank, world = net.batch, 0, 1
        if self._ddp is not None:
            # every worker holds the same network (same seed, same BPR start) and draws the same batches;
            # each computes its share of a batch and DDP averages the gradients: the one-process step
            rank, world = self._ddp
            step_fn = _ddp_wrap(net)
        users, items = part.users.astype(np.int64), part.items.astype(np.int64)
        warm_items = np.flatnonzero(warm)  # negatives come from the catalog the model has seen
        threads = _ThreadTrial(torch, fixed=bool(self.threads_))

        def run_epoch(epoch: int) -> dict[str, Any]:
            net.train()
            t0, total = time.perf_counter(), 0.0
            net.new_epoch(rng)
            perm = rng.permutation(len(users))
            for step, s in enumerate(range(0, len(perm), cfg.batch_size)):
                if epoch == 0 and threads.step(step):
                    self.threads_ = torch.get_num_threads()
                b = perm[s:s + cfg.batch_size]
                neg_items = warm_items[rng.integers(len(warm_items), size=len(b))]
                if world > 1:
                    if len(b) < world:  # the same on every worker: all skip it
                        continue
                    b, neg_items = b[rank::world], neg_items[rank::world]
                pos, neg, norms, aux = step_fn(torch.from_numpy(users[b]), torch.from_numpy(items[b]),
                                               torch.from_numpy(neg_items))
                loss = objectives.bpr(pos, neg) + cfg.reg * norms
                if cfg.align_weight > 0:
                    loss = loss + cfg.align_weight * aux
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(b)
            return {"epoch": epoch, "loss": total / len(perm), "seconds": time.perf_counter() - t0,
                    "refit": val is None and cfg.early_stopping > 0}

        def validate() -> float:
            net.eval()
            with torch.no_grad():
                state = net.export()
            return recall_at(state["U"], state["V"], state.get("b"), X, val.binary, seed=cfg.seed)

        result = train_epochs(epochs, run_epoch, self._epoch_done,
                              validate=validate if val is not None else None, patience=cfg.early_stopping,
                              checkpoint=lambda: {k: v.detach().clone() for k, v in net.state_dict().items()},
                              restore=net.load_state_dict, validate_start=bool(started))
        return net, result

    def _bpr_start(self, net, part: Interactions) -> list:
        """Set the network's id vectors from a BPR fit (``init = "bpr"``); returns the parameters set."""
        cfg = self.config
        if cfg.init != "bpr" or not net.cf_width:
            return []
        # Adam on id embeddings peaks within a few epochs well below a long SGD BPR run (measured at 1M
        # events: hybrid Recall@10 0.12-0.15 from scratch against BPR's 0.16): start from BPR's factors, as
        # NCF pre-trains with GMF, and let the network add content to them
        from mosaicrec.models.mf import BPR

        torch = _torch()
        # one thread: Hogwild's update order varies with more, and a seed must give one model
        start = BPR(factors=net.cf_width, iterations=cfg.init_iterations, seed=cfg.seed, num_threads=1,
                    learning_rate=cfg.init_learning_rate, regularization=cfg.init_regularization).fit(part)
        with torch.no_grad():
            return net.start_from(torch.from_numpy(start.U_), torch.from_numpy(start.V_),
                                  torch.from_numpy(start.item_bias_))

    def _fold_options(self) -> dict[str, float]:
        return {"target": float(self.fold_target_[0])}

    def item_vectors(self) -> np.ndarray:
        """The item vectors scores are dot products with (content-derived for items never trained on)."""
        return self.V_

    def _state(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k + "_") for k in self._state_keys}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self._state_keys = tuple(state)
        for k, v in state.items():
            setattr(self, k + "_", v)

    def _build(self, train: Interactions, feats: dict[str, np.ndarray], masks: dict[str, np.ndarray],
               warm: np.ndarray):
        raise NotImplementedError


class _ThreadTrial:
    """On a small, busy machine torch's intra-op threads can be several times slower than one (they spin
    against each other and the other processes); which wins depends on the batch and the load, so the first
    epoch times a few real training batches each way and keeps the faster (unless threads were fixed)."""

    def __init__(self, torch, fixed: bool) -> None:
        self.torch = torch
        self.trial = [] if fixed else [torch.get_num_threads()] * 4 + [1] * 4
        self.timings: dict[int, list[float]] = {}
        self.t0 = 0.0

    def step(self, step: int) -> bool:
        """Before the first epoch's batch ``step``: set the threads to try; ``True`` once chosen."""
        if not self.trial or step > len(self.trial):
            return False
        if step:
            self.timings.setdefault(self.torch.get_num_threads(), []).append(time.perf_counter() - self.t0)
        chosen = step == len(self.trial)
        if chosen:
            self.torch.set_num_threads(min(self.timings, key=lambda n: np.median(self.timings[n])))
        else:
            self.torch.set_num_threads(self.trial[step])
        self.t0 = time.perf_counter()
        return chosen


def _ddp_wrap(net):
    """``net.batch`` through torch's DistributedDataParallel (whose gradient averaging runs on ``forward``)."""
    torch = _torch()

    class Step(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, u, i, j):
            return self.net.batch(u, i, j)

    # some parts (an alignment head, a fusion branch) may get no gradient in a batch
    return torch.nn.parallel.DistributedDataParallel(Step(net), find_unused_parameters=True)


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _net_base():
    """The torch base class of every network (:mod:`.nets`, imported lazily so importing this module needs
    no torch)."""
    from mosaicrec.models.neural.nets import Net

    return Net


def _copy_start(pairs, fusion=None) -> list:
    from mosaicrec.models.neural.nets import copy_start

    return copy_start(pairs, fusion)


def _init(emb, std: float = 0.1):
    from mosaicrec.models.neural.nets import init

    return init(emb, std)
