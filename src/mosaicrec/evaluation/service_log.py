"""Off-policy evaluation on the service's own impression log: what would another model have earned on the
traffic the service actually served?

Every list the service shows is logged (``impressions``: request id, user, item, position, the probability
the item was shown with under the policy that chose it). A shown item's reward is 1 when the user posted a
positive event on it naming the list (``context.request_id``, the rule the in-service bandit learns by):
weight at or above the positive threshold. Events without the request id are not attributed to a list.

A target is a trained model serving top-``k`` lists, ``k`` being each logged list's own length, so that
values are per shown slot: the probability that a slot earns a reward. It is deterministic, so its
probability of showing a logged item is 1 or 0; the logged propensity divides it (independent IPS over
the slate's rows, :mod:`mosaicrec.evaluation.ope`). Only a stochastic logger (the bandit's ε-greedy or
Thompson share) covers items other than those it would show greedily: on rows logged with propensity 1
IPS is replay, and a target's items the logger never showed count as unrewarded. ``overlap`` reports the
share of the target's items that the logged lists contained (the rows the estimates learn the target
from), and ``stochastic_rows`` the share logged with propensity < 1.
Rounds of users the target does not know (new users) are left out and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mosaicrec.data.store import Store
from mosaicrec.evaluation.ope import BanditLog, Estimate, evaluate_policy
from mosaicrec.models.base import BaseRecommender

_LOG_SQL = """
SELECT i.request_id, i.served_at, i.user_id, i.item_id, i.position, i.propensity, i.policy, i.model,
       i.scenario, COALESCE(MAX(CASE WHEN e.weight >= ? THEN 1 ELSE 0 END), 0) AS reward
FROM impressions i
LEFT JOIN events e ON e.user_id = i.user_id AND e.item_id = i.item_id
     AND json_extract_string(e.context, '$.request_id') = i.request_id
{where}
GROUP BY ALL
ORDER BY i.served_at, i.request_id, i.position
"""


def read_impressions(store: Store, threshold: float = 1.0, policy: str | None = None,
                     since: float | None = None) -> pd.DataFrame:
    """The logged rows with their rewards: one row per shown item (columns ``request_id, served_at,
    user_id, item_id, position, propensity, policy, model, scenario, reward``). ``policy`` keeps the lists
    one policy chose (e.g. ``epsilon-greedy+greedy``); ``since`` those served from that Unix time on."""
    conds, params = [], [float(threshold)]
    if policy is not None:
        conds.append("i.policy = ?")
        params.append(policy)
    if since is not None:
        conds.append("i.served_at >= ?")
        params.append(float(since))
    sql = _LOG_SQL.format(where=("WHERE " + " AND ".join(conds)) if conds else "")
    return store.con.execute(sql, params).df()


@dataclass
class LogEvaluation:
    """Estimates of one target's value per shown slot, with what they rest on."""

    target: str
    estimates: dict[str, Estimate]
    rounds: int                 # logged lists evaluated
    rows: int                   # shown items in them
    skipped_rounds: int         # lists of users the target does not know
    overlap: float              # share of the target's (list, item) pairs that the logged lists showed
    logged_value: float         # the logger's own mean reward per slot on those lists
    stochastic_rows: float      # share of rows logged with propensity < 1
    policies: dict[str, int] = field(default_factory=dict)  # logged lists per logging policy

    def to_dict(self) -> dict:
        return {"target": self.target, "estimates": {k: v.to_dict() for k, v in self.estimates.items()},
                "rounds": self.rounds, "rows": self.rows, "skipped_rounds": self.skipped_rounds,
                "overlap": self.overlap, "logged_value": self.logged_value,
                "stochastic_rows": self.stochastic_rows, "policies": self.policies}


def evaluate_on_log(log: pd.DataFrame, model: BaseRecommender, name: str | None = None, *,
                    n_boot: int = 200, seed: int = 0, prior: float = 10.0) -> LogEvaluation:
    """The value of ``model``'s top-k lists on the logged traffic (see the module). The reward model of the
    doubly robust estimator is each item's logged reward rate shrunk to the overall rate (``prior``
    pseudo-rows), fitted on the same log."""
    if not len(log):
        raise ValueError("the impression log is empty: nothing to evaluate on")
    users = {str(u): k for k, u in enumerate(model.user_ids)}
    items = {str(i): k for k, i in enumerate(model.item_ids)}
    known = log["user_id"].astype(str).map(users)
    rounds = log["request_id"].astype(str).to_numpy()
    keep_round = pd.Series(known.notna().to_numpy()).groupby(rounds).transform("all").to_numpy()
    skipped = int(len(set(rounds[~keep_round])))
    log = log[keep_round].reset_index(drop=True)
    if not len(log):
        raise ValueError("the target model knows none of the logged users")
    u = known[keep_round].astype(np.int64).to_numpy()
    rid = log["request_id"].astype(str).to_numpy()
    _, round_idx, sizes = np.unique(rid, return_inverse=True, return_counts=True)
    size_of_row = sizes[round_idx]
    kmax = int(sizes.max())
    # one ranking per distinct user: its top kmax, cut to each list's own length
    distinct, inv = np.unique(u, return_inverse=True)
    top, _ = model.recommend(distinct, k=kmax, exclude_seen=True)
    # rank of each logged item in its user's list, by sorted (user, item) keys: no users × items matrix
    n = np.int64(max(model.n_items, 1))
    slot = np.tile(np.arange(kmax), len(distinct))
    keys = (np.repeat(np.arange(len(distinct)), kmax) * n + top.ravel())[top.ravel() >= 0]
    slot = slot[top.ravel() >= 0]
    order = np.argsort(keys)
    keys, slot = keys[order], slot[order]
    item = log["item_id"].astype(str).map(items).fillna(-1).astype(np.int64).to_numpy()
    probe = inv * n + np.maximum(item, 0)
    pos = np.minimum(np.searchsorted(keys, probe), max(len(keys) - 1, 0))
    found = (item >= 0) & (len(keys) > 0) & (keys[pos] == probe) if len(keys) else np.zeros(len(item), bool)
    rank = np.where(found, slot[pos] if len(keys) else 0, kmax + 1)
    target = (rank < size_of_row).astype(np.float64)
    rewards = log["reward"].to_numpy(np.float64)
    props = log["propensity"].to_numpy(np.float64)
    # reward model: item reward rates shrunk to the mean
    mean = float(rewards.mean())
    rate = pd.Series(rewards).groupby(item).agg(["sum", "count"])
    q_item = (rate["sum"] + prior * mean) / (rate["count"] + prior)

    def q_of(idx: np.ndarray) -> np.ndarray:
        return q_item.reindex(idx).fillna(mean).to_numpy(np.float64)

    q_logged = q_of(item)
    # the target's expected reward per slot: mean q̂ over its list for that round
    q_list = np.zeros(len(sizes))
    first_row = np.unique(round_idx, return_index=True)[1]
    for r, row_i in enumerate(first_row):
        k_r = int(sizes[r])
        lst = top[inv[row_i], :k_r]
        q_list[r] = q_of(lst[lst >= 0]).mean() if (lst >= 0).any() else mean
    q_target = q_list[round_idx]
    bandit_log = BanditLog(actions=item, rewards=rewards, propensities=props, rounds=round_idx)
    actions = np.where(target > 0, item, -2)  # replay: the rows whose item the target would show too
    estimates = evaluate_policy(bandit_log, target_probs=target, target_actions=actions, q_logged=q_logged,
                                q_target=q_target, n_boot=n_boot, seed=seed)
    shown = set(zip(round_idx.tolist(), item.tolist()))
    wanted = [(r, int(a)) for r, row_i in enumerate(first_row) for a in top[inv[row_i], :sizes[r]] if a >= 0]
    overlap = float(np.mean([w in shown for w in wanted])) if wanted else 0.0
    per_policy = log.groupby("policy")["request_id"].nunique().to_dict()
    return LogEvaluation(name or model.name, estimates, int(len(sizes)), int(len(log)), skipped, overlap,
                         mean, float(np.mean(props < 1)), {str(k): int(v) for k, v in per_policy.items()})
