"""The multi-task network in torch: embeddings of the user, the item and the context features, a shared
part (shared-bottom, MMoE or PLE experts with one gate per task, or STAR's scenario-scaled layers), and one
tower per task. Imported only when a multi-task model trains or scores (see :mod:`.multitask`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def mlp(n_in: int, n_out: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, n_out), nn.ReLU(), nn.Dropout(dropout))


class StarLayer(nn.Module):
    """A linear layer whose weight is shared ⊙ the scenario's own, bias shared + the scenario's."""

    def __init__(self, n_in: int, n_out: int, n_scenarios: int) -> None:
        super().__init__()
        self.shared = nn.Linear(n_in, n_out)
        self.w = nn.Parameter(torch.ones(n_scenarios + 1, n_in, n_out))
        self.b = nn.Parameter(torch.zeros(n_scenarios + 1, n_out))

    def forward(self, x, scen):
        # one product per scenario present, not a weight matrix per row: a batch holds a few scenarios
        # (a ranking request one), and gathering B × n_in × n_out weights cost 10× the MMoE's time
        out = x.new_empty(x.shape[0], self.b.shape[1])
        for s in torch.unique(scen):
            rows = torch.nonzero(scen == s).squeeze(1)
            out[rows] = x[rows] @ (self.shared.weight.T * self.w[s]) + self.shared.bias + self.b[s]
        return torch.relu(out)


class MultiTaskNet(nn.Module):
    """One output (a logit, or a standardised regression value) per task (see the module)."""

    def __init__(self, n_users: int, n_items: int, vocab: list[int], n_scenarios: int, n_attr: int, cfg: Any) -> None:
        super().__init__()
        self.cfg = cfg
        self.users = nn.Embedding(n_users, cfg.dim)
        self.items = nn.Embedding(n_items, cfg.dim)
        for e in (self.users, self.items):
            nn.init.normal_(e.weight, std=0.05)
        self.feats = nn.ModuleList(nn.Embedding(v + 1, cfg.dim) for v in vocab)
        n_in = cfg.dim * (3 + len(vocab))
        self._shared_part(n_in, n_scenarios)
        n_tasks, k = len(cfg.tasks), cfg.task_embeddings
        self.towers = nn.ModuleList(nn.Sequential(mlp(cfg.expert_dim + 3 * k, cfg.tower_dim, cfg.dropout),
                                                  nn.Linear(cfg.tower_dim, 1)) for _ in range(n_tasks))
        # a rare task's signal is a small share of the shared embeddings' gradient (like is ~2% of the
        # impressions, click ~45%): its own embeddings learn what only it sees
        self.task_users = nn.ModuleList(nn.Embedding(n_users, k) for _ in range(n_tasks if k else 0))
        self.task_items = nn.ModuleList(nn.Embedding(n_items, k) for _ in range(n_tasks if k else 0))
        for e in (*self.task_users, *self.task_items):
            nn.init.normal_(e.weight, std=0.05)
        self.log_vars = nn.Parameter(torch.zeros(n_tasks))
        self.attr = nn.Linear(cfg.dim, n_attr) if n_attr else None

    def _shared_part(self, n_in: int, n_scenarios: int) -> None:
        cfg, arch = self.cfg, self.cfg.architecture
        if arch == "shared-bottom":
            self.bottom = nn.Sequential(mlp(n_in, cfg.expert_dim, cfg.dropout), mlp(cfg.expert_dim, cfg.expert_dim,
                                                                                      cfg.dropout))
        elif arch == "star":
            self.star = nn.ModuleList([StarLayer(n_in, cfg.expert_dim, n_scenarios),
                                       StarLayer(cfg.expert_dim, cfg.expert_dim, n_scenarios)])
        else:
            n_tasks = len(cfg.tasks)
            n_experts = cfg.experts + (n_tasks * cfg.task_experts if arch == "ple" else 0)
            self.experts = nn.ModuleList(mlp(n_in, cfg.expert_dim, cfg.dropout) for _ in range(n_experts))
            per_gate = cfg.experts + (cfg.task_experts if arch == "ple" else 0) + cfg.scenario_experts
            self.gates = nn.ModuleList(nn.Linear(n_in, per_gate) for _ in range(n_tasks))
            # one group per scenario code (0: unknown); a row meets its own scenario's group only
            self.scenario_experts = nn.ModuleList(mlp(n_in, cfg.expert_dim, cfg.dropout) for _ in
                                                  range((n_scenarios + 1) * cfg.scenario_experts))

    def forward(self, u, i, f, scen):
        """``batch × n_tasks`` outputs for users ``u``, items ``i``, feature codes ``f``, scenarios ``scen``."""
        eu, ei = self.users(u), self.items(i)
        x = torch.cat([eu, ei, eu * ei, *[emb(f[:, k]) for k, emb in enumerate(self.feats)]], dim=1)
        arch = self.cfg.architecture
        if arch == "shared-bottom":
            inputs = [self.bottom(x)] * len(self.towers)
        elif arch == "star":
            h = x
            for layer in self.star:
                h = layer(h, scen)
            inputs = [h] * len(self.towers)
        else:
            inputs = self._gated(x, scen)
        if self.cfg.task_embeddings:
            own = [(tu(u), ti(i)) for tu, ti in zip(self.task_users, self.task_items)]
            inputs = [torch.cat([h, ou, oi, ou * oi], dim=1) for h, (ou, oi) in zip(inputs, own)]
        return torch.cat([tower(h) for tower, h in zip(self.towers, inputs)], dim=1)

    def _gated(self, x, scen) -> list:
        """MMoE / PLE: each task's gate mixes the shared experts (and its own, and the row's scenario's)."""
        cfg = self.cfg
        outs = torch.stack([e(x) for e in self.experts], dim=1)  # batch × experts × d
        own_scenario = self._scenario_experts(x, scen) if cfg.scenario_experts else None
        inputs = []
        for t, gate in enumerate(self.gates):
            if cfg.architecture == "ple":
                own = cfg.experts + t * cfg.task_experts
                mine = outs[:, list(range(cfg.experts)) + list(range(own, own + cfg.task_experts))]
            else:
                mine = outs
            if own_scenario is not None:
                mine = torch.cat([mine, own_scenario], dim=1)
            w = torch.softmax(gate(x), dim=1).unsqueeze(-1)
            inputs.append((w * mine).sum(1))
        return inputs

    def _scenario_experts(self, x, scen):
        """``batch × scenario_experts × d``: each row through its own scenario's experts, one pass per
        scenario present (as in the STAR layer)."""
        k = self.cfg.scenario_experts
        out = x.new_empty(x.shape[0], k, self.cfg.expert_dim)
        for s in torch.unique(scen):
            rows = torch.nonzero(scen == s).squeeze(1)
            out[rows] = torch.stack([self.scenario_experts[int(s) * k + e](x[rows]) for e in range(k)], dim=1)
        return out

    def loss(self, out, y, binary, fixed):
        """The batch's loss and each task's: cross-entropy for binary tasks, squared error for regression
        ones, weighted by the tasks' weights or learned by uncertainty (Kendall et al. 2018)."""
        bce = nn.functional.binary_cross_entropy_with_logits(out, y, reduction="none").mean(0)
        mse = (out - y).square().mean(0)
        losses = torch.where(binary, bce, mse)
        if self.cfg.loss_weighting == "uncertainty":
            return (torch.exp(-self.log_vars) * losses + self.log_vars).sum(), losses
        return (fixed * losses).sum(), losses

    def attribute_loss(self, items, targets):
        """Predicting the items' attributes from their embeddings (the auxiliary task)."""
        return nn.functional.binary_cross_entropy_with_logits(self.attr(self.items(items)), targets)
