"""Off-policy evaluation on the service's own impression log: what would another model have earned on the
traffic the service actually served?

Every list the service shows is logged (``impressions``: request id, user, item, position, the probability
the item was shown with under the policy that chose it). A shown item's reward is 1 when the user posted a
positive event on it naming the list (``context.request_id``, the rule the in-service bandit learns by):
weight at or above the positive threshold. Events without the request id are not attributed to a list.

A target is a trained model serving top-``k`` lists, ``k`` being each logged list's own length, so that
values are per shown slot: the probability that a slot earns a reward. Its lists are made by the one
pipeline the service runs (:mod:`mosaicrec.ranking.pipeline`: the user's likes folded in, dislikes left
out, a user with nothing to go on given the popular items), over the users' events less the rewards of the
logged lists (:func:`without_rewards`: what a target is measured by is not history it may exclude). It is
deterministic, so its probability of showing a logged item is 1 or 0; the logged
propensity divides it (independent IPS over the slate's rows, :mod:`mosaicrec.evaluation.ope`). Only a stochastic logger (the bandit's ε-greedy or
Thompson share) covers items other than those it would show greedily: on rows logged with propensity 1
IPS is replay, and a target's items the logger never showed count as unrewarded. ``overlap`` reports the
share of the target's items that the logged lists contained (the rows the estimates learn the target
from), ``stochastic_rows`` the share logged with propensity < 1, and ``cold_rounds`` the lists for which
the target had nothing to go on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mosaicrec.data.store import Store
from mosaicrec.errors import MosaicError
from mosaicrec.evaluation.ope import BanditLog, Estimate, evaluate_policy
from mosaicrec.models.base import BaseRecommender
from mosaicrec.ranking.export import Listing
from mosaicrec.ranking.pipeline import Pipeline, Request

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
    cold_rounds: int            # lists for which the target had nothing to go on (its popular items)
    overlap: float              # share of the target's (list, item) pairs that the logged lists showed
    logged_value: float         # the logger's own mean reward per slot on those lists
    stochastic_rows: float      # share of rows logged with propensity < 1
    policies: dict[str, int] = field(default_factory=dict)  # logged lists per logging policy

    def to_dict(self) -> dict:
        return {"target": self.target, "estimates": {k: v.to_dict() for k, v in self.estimates.items()},
                "rounds": self.rounds, "rows": self.rows, "cold_rounds": self.cold_rounds,
                "overlap": self.overlap, "logged_value": self.logged_value,
                "stochastic_rows": self.stochastic_rows, "policies": self.policies}


def target_lists(listing: Listing, rounds: pd.DataFrame) -> tuple[dict[str, list[str]], set[str]]:
    """What the target would have shown in each logged round (columns ``request_id, user_id, k,
    scenario``): the one pipeline's list of the round's length over the listing. Returns the lists (item
    ids by request id) and the rounds the target served cold (nothing to go on: its popular items)."""
    snap = listing.snapshot()
    pipeline = Pipeline(listing.live)
    lists, cold = {}, set()
    for rid, user, k, scenario in rounds[["request_id", "user_id", "k", "scenario"]].itertuples(index=False, name=None):
        scen = scenario if isinstance(scenario, str) and scenario and listing.model.uses_context else None
        got = pipeline.run(snap, Request(str(user), int(k), scenario=scen, reasons="none"))
        lists[str(rid)] = [e.item_id for e in got.items]
        if got.cold_start:
            cold.add(str(rid))
    return lists, cold


def without_rewards(events: pd.DataFrame, request_ids: set[str]) -> pd.DataFrame:
    """The store's events less those that answer one of these lists (their context names its
    ``request_id``): the users' histories as they were before the logged traffic's feedback, which a
    target is asked with (the rewards are what it is measured by, not what it may exclude)."""
    ctx = events["context"].astype(str)
    marked = ctx.str.contains("request_id", regex=False).to_numpy()
    answers = np.zeros(len(events), bool)
    for row in np.flatnonzero(marked):
        try:
            rid = json.loads(ctx.iloc[row]).get("request_id")
        except (ValueError, AttributeError):
            continue
        answers[row] = isinstance(rid, str) and rid in request_ids
    return events[~answers]


def evaluate_on_log(log: pd.DataFrame, target: BaseRecommender | Listing, name: str | None = None, *,
                    n_boot: int = 200, seed: int = 0, prior: float = 10.0) -> LogEvaluation:
    """The value of the target's lists on the logged traffic (see the module). ``target`` is a model (its
    listing: its own items, each trained user's training items as their events) or the listing of a store
    (whose live state should hold the users' events :func:`without_rewards`). The reward model of the
    doubly robust estimator is each item's logged reward rate shrunk to the overall rate (``prior``
    pseudo-rows), fitted on the same log."""
    if not len(log):
        raise MosaicError("the impression log is empty: nothing to evaluate on")
    listing = target if isinstance(target, Listing) else Listing.of_model(target)
    rid = log["request_id"].astype(str).to_numpy()
    _, round_idx, sizes = np.unique(rid, return_inverse=True, return_counts=True)
    first_row = np.unique(round_idx, return_index=True)[1]
    rounds = pd.DataFrame({"request_id": rid[first_row], "user_id": log["user_id"].astype(str).to_numpy()[first_row],
                           "k": sizes, "scenario": log["scenario"].to_numpy(object)[first_row] if "scenario" in log
                           else None})
    lists, cold = target_lists(listing, rounds)
    item = log["item_id"].astype(str).to_numpy()
    shows = np.array([it in set_ for it, set_ in zip(item, (set(lists[r]) for r in rid))])
    target = shows.astype(np.float64)
    rewards = log["reward"].to_numpy(np.float64)
    props = log["propensity"].to_numpy(np.float64)
    # reward model: item reward rates shrunk to the mean
    mean = float(rewards.mean())
    rate = pd.Series(rewards).groupby(item).agg(["sum", "count"])
    q_item = (rate["sum"] + prior * mean) / (rate["count"] + prior)

    def q_of(ids: list[str]) -> float:
        return float(q_item.reindex(ids).fillna(mean).mean()) if ids else mean

    q_logged = q_item.reindex(item).fillna(mean).to_numpy(np.float64)
    q_target = np.array([q_of(lists[r]) for r in rid[first_row]])[round_idx]
    codes = pd.Index(pd.unique(item)).get_indexer(item)
    bandit_log = BanditLog(actions=codes, rewards=rewards, propensities=props, rounds=round_idx)
    actions = np.where(target > 0, codes, -2)  # replay: the rows whose item the target would show too
    estimates = evaluate_policy(bandit_log, target_probs=target, target_actions=actions, q_logged=q_logged,
                                q_target=q_target, n_boot=n_boot, seed=seed)
    shown = set(zip(rid.tolist(), item.tolist()))
    wanted = [(r, i) for r, ids in lists.items() for i in ids]
    overlap = float(np.mean([w in shown for w in wanted])) if wanted else 0.0
    per_policy = log.groupby("policy")["request_id"].nunique().to_dict()
    return LogEvaluation(name or listing.model.name, estimates, int(len(sizes)), int(len(log)), len(cold), overlap,
                         mean, float(np.mean(props < 1)), {str(k): int(v) for k, v in per_policy.items()})
