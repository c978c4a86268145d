"""Off-policy evaluation on the service's own impression log: what would another model have earned on the
traffic the service actually served, and can the log tell at all?

Every list the service shows is logged (``impressions``: request id, user, item, position, the probability
that the policy which chose the list shows that item *at that position*); a list an exploring policy drew
at random also keeps its draw (``slates``: the candidates, their scores, the greedy list, ε or the
temperature), so that the probability of *any* item at *any* position can be computed afterwards. A shown
item's reward is 1 when the user posted a positive event on it naming the list (``context.request_id``):
weight at or above the positive threshold. Events without the request id are not attributed to a list.

A target is a trained model serving top-``k`` lists, ``k`` being each logged list's own length, so that
values are per shown slot. Its lists are made by the one pipeline the service runs
(:mod:`mosaicrec.ranking.pipeline`), each with the user's history as it was when the logged list was served:
their events less the rewards of the logged lists (:func:`without_rewards`: what a target is measured by is
not history it may exclude), plus the rewards of the lists served before it (:func:`split_rewards`), so
that the target, like the logger, leaves out what the user had already answered. It is deterministic:
its probability of an item at a position is 1 or 0. The slate estimators of
:mod:`mosaicrec.evaluation.slates` weigh the log by it.

**Support is stated, not footnoted.** Every (list, position) the target fills is checked against the
logger: was its item possible there at all (``support``; for the position-based-model estimators, anywhere
in the list: ``support_pbm``)? An estimator is *refused*, with the reason, when its support is below
``min_support`` (a deterministic logger supports only its own lists) or its effective sample size below
``min_ess``; otherwise the target's unsupported slots are bounded, not guessed: rewards lie in [0, 1], so
the interval runs from the supported slots' lower bound to their upper bound plus the unsupported share,
and the value imputes those slots by the reward model. **Self-checks**: the logger evaluated as a target
must find its own logged value within its interval (``logger``), and each ε-greedy row's logged propensity
must equal the one recomputed from its draw (``propensity_mismatch``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mosaicrec.data.schema import answered_lists
from mosaicrec.data.store import Store
from mosaicrec.errors import MosaicError
from mosaicrec.evaluation.slates import ESTIMATORS, SlateEstimate, estimate, pbm_weights, pi_weights
from mosaicrec.models.base import BaseRecommender
from mosaicrec.ranking.explore import epsilon_greedy_marginals, position_marginals
from mosaicrec.ranking.export import Listing
from mosaicrec.ranking.lists import Draw
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


def read_slates(store: Store, request_ids: set[str] | None = None) -> pd.DataFrame:
    """The draws of the lists a stochastic policy chose (the ``slates`` table), one row per list; only
    those of ``request_ids`` when given."""
    frame = store.slates()
    return frame[frame["request_id"].isin(request_ids)] if request_ids is not None else frame


@dataclass
class LoggerCheck:
    """The logging policy evaluated as a target on its own log: each estimate's interval must hold the
    logged value. ``propensity_mismatch``: the largest gap between a logged propensity and the one its draw
    gives again (ε-greedy: exactly; NaN without such rows)."""

    estimates: dict[str, SlateEstimate]
    logged_value: float
    propensity_mismatch: float

    @property
    def failed(self) -> list[str]:
        out = [n for n, e in self.estimates.items() if not e.low - 1e-9 <= self.logged_value <= e.high + 1e-9]
        if self.propensity_mismatch > 1e-6:
            out.append("propensities")
        return out

    def to_dict(self) -> dict:
        return {"estimates": {k: v.to_dict() for k, v in self.estimates.items()}, "logged_value": self.logged_value,
                "propensity_mismatch": self.propensity_mismatch, "failed": self.failed}


@dataclass
class LogEvaluation:
    """One target's estimates per shown slot on a log, what they rest on, and what was refused and why."""

    target: str
    estimates: dict[str, SlateEstimate]   # the estimators that could be given (bounds widened by unsupported)
    refused: dict[str, str]               # estimator → why it cannot be estimated
    rounds: int                           # logged lists evaluated
    rows: int                             # shown items in them
    cold_rounds: int                      # lists for which the target had nothing to go on (its popular items)
    overlap: float                        # share of the target's (list, item) pairs that the logged lists showed
    support: float                        # share of the target's (list, position) slots the logger could fill so
    support_pbm: float                    # … with the item anywhere in the list (position-based model)
    logged_value: float                   # the logger's mean reward per slot on those lists
    stochastic_rows: float                # share of rows logged with propensity < 1
    theta: list[float]                    # examination by position the pbm estimators used
    theta_estimated: bool                 # from uniformly random lists (else assumed 1)
    policies: dict[str, int] = field(default_factory=dict)  # logged lists per logging policy
    lists: dict[str, list[str]] = field(default_factory=dict, repr=False)  # the target's list per request id

    def to_dict(self) -> dict:
        return {"target": self.target, "estimates": {k: v.to_dict() for k, v in self.estimates.items()},
                "refused": self.refused, "rounds": self.rounds, "rows": self.rows, "cold_rounds": self.cold_rounds,
                "overlap": self.overlap, "support": self.support, "support_pbm": self.support_pbm,
                "logged_value": self.logged_value, "stochastic_rows": self.stochastic_rows, "theta": self.theta,
                "theta_estimated": self.theta_estimated, "policies": self.policies}


def target_lists(listing: Listing, rounds: pd.DataFrame, answers: dict[str, pd.DataFrame] | None = None
                 ) -> tuple[dict[str, list[str]], set[str]]:
    """What the target would have shown in each logged round (columns ``request_id, user_id, k,
    scenario``, in the order they were served): the one pipeline's list of the round's length over the
    listing. ``answers``: the events that answered each round (its rewards), applied to the listing's live
    state once the round is made, so that each list is asked with the user's history as it was when the
    logged list was served (earlier rounds' rewards included, its own not). Returns the lists (item ids by
    request id) and the rounds the target served cold (nothing to go on: its popular items)."""
    snap = listing.snapshot()
    pipeline = Pipeline(listing.live)
    lists, cold = {}, set()
    for rid, user, k, scenario in rounds[["request_id", "user_id", "k", "scenario"]].itertuples(index=False, name=None):
        scen = scenario if isinstance(scenario, str) and scenario and listing.model.uses_context else None
        got = pipeline.run(snap, Request(str(user), int(k), scenario=scen, reasons="none"))
        lists[str(rid)] = [e.item_id for e in got.items]
        if got.cold_start:
            cold.add(str(rid))
        if answers is not None and str(rid) in answers:
            listing.live.apply(answers[str(rid)])
    return lists, cold


def split_rewards(events: pd.DataFrame, request_ids: set[str]) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """The store's events as :func:`without_rewards` and, apart, the events that answer each list (by
    request id): what :func:`target_lists` applies round by round."""
    answers = _answer_ids(events, request_ids)
    marked = answers != ""
    return events[~marked], {str(rid): frame for rid, frame in events[marked].groupby(answers[marked], sort=False)}


def _answer_ids(events: pd.DataFrame, request_ids: set[str]) -> np.ndarray:
    """Per event, the logged list (of ``request_ids``) it answers, else ""."""
    return np.array([r if r is not None and r in request_ids else "" for r in answered_lists(events["context"])],
                    object)


def without_rewards(events: pd.DataFrame, request_ids: set[str]) -> pd.DataFrame:
    """The store's events less those that answer one of these lists (their context names its
    ``request_id``): the users' histories as they were before the logged traffic's feedback, which a
    target is asked with (the rewards are what it is measured by, not what it may exclude)."""
    return events[_answer_ids(events, request_ids) == ""]


#EVALUATE
def _seed_of(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big")


@dataclass
class _Round:
    """One logged list and what its logger could have shown (see :class:`LoggedRounds`)."""

    rid: str
    user: str
    scenario: str | None
    start: int                 # its rows in the log: start … start + k
    k: int
    kind: str                  # deterministic | epsilon-greedy | plackett-luce | thompson | undrawn
    candidates: np.ndarray     # item ids the logger drew from (deterministic: the shown list)
    index: dict[str, int]
    greedy: np.ndarray         # candidate index per position of the list it shows when not exploring
    logged: np.ndarray         # candidate index per position of the shown list
    epsilon: float = 0.0
    temperature: float = 1.0
    explored: bool = False
    scores: np.ndarray | None = None
    _marginals: np.ndarray | None = None

    def mu(self, idx: np.ndarray) -> np.ndarray | None:
        """``len(idx) × k``: the logger's probability of these candidates at each position (None: not kept,
        Thompson sampling)."""
        idx = np.asarray(idx, np.int64)
        if self.kind == "deterministic":
            return (idx[:, None] == np.arange(self.k)[None, :]).astype(np.float64)
        if self.kind == "epsilon-greedy":
            return epsilon_greedy_marginals(self.epsilon, len(self.candidates), self.greedy, idx)
        if self.kind == "plackett-luce":
            if self._marginals is None:
                c = len(self.candidates)
                samples = int(max(500, min(4000, 400_000 // max(c, 1))))
                draw = Draw("plackett-luce", np.arange(c), self.scores, self.greedy, temperature=self.temperature)
                self._marginals = position_marginals(draw, self.k, samples, seed=_seed_of(self.rid))
            return self._marginals[idx]
        return None


class LoggedRounds:
    """A log's lists with their loggers (built once, shared by every target): ``log`` as
    :func:`read_impressions` returns it, ``slates`` as :func:`read_slates` (lists without a draw were chosen
    deterministically when every propensity is 1; one with a propensity below 1 and no draw is ``undrawn``:
    like Thompson sampling's, only its shown items' probabilities are known)."""

    def __init__(self, log: pd.DataFrame, slates: pd.DataFrame | None = None) -> None:
        if not len(log):
            raise MosaicError("the impression log is empty: nothing to evaluate on")
        log = log.sort_values(["served_at", "request_id", "position"], kind="stable").reset_index(drop=True)
        self.log = log
        draws = {} if slates is None or not len(slates) else {str(r["request_id"]): r for r in
                                                              slates.to_dict("records")}
        rid = log["request_id"].astype(str).to_numpy()
        item = log["item_id"].astype(str).to_numpy()
        users = log["user_id"].astype(str).to_numpy()
        props = log["propensity"].to_numpy(np.float64)
        scen = log["scenario"].to_numpy(object) if "scenario" in log else np.full(len(log), None, object)
        change = np.flatnonzero(np.r_[True, rid[1:] != rid[:-1]])
        bounds = np.r_[change, len(log)]
        self.rounds: list[_Round] = []
        for b, e in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            shown = item[b:e]
            d = draws.get(rid[b])
            sc = scen[b] if isinstance(scen[b], str) and scen[b] else None
            if d is not None:
                cand = np.asarray(d["candidates"], dtype=object).astype(str)
                index = {a: i for i, a in enumerate(cand.tolist())}
                greedy = np.array([index.get(a, -1) for a in np.asarray(d["greedy"], dtype=object).astype(str)])
                logged = np.array([index.get(a, -1) for a in shown])
                if (logged < 0).any() or (greedy < 0).any():  # a draw that does not hold its own list: use the
                    d = None                                   # logged propensities alone (as for Thompson)
            if d is not None:
                self.rounds.append(_Round(rid[b], users[b], sc, b, e - b, str(d["kind"]), cand, index, greedy, logged,
                                          float(d["epsilon"] or 0.0), float(d["temperature"] or 1.0),
                                          bool(d["explored"]), np.asarray(d["scores"], np.float64)))
            else:
                kind = "deterministic" if np.all(props[b:e] >= 1.0) else "undrawn"  # stochastic, no draw kept
                index = {a: i for i, a in enumerate(shown.tolist())}
                pos = np.arange(e - b)
                self.rounds.append(_Round(rid[b], users[b], sc, b, e - b, kind, shown, index, pos, pos))
        self.rewards = log["reward"].to_numpy(np.float64)
        self.propensities = props
        self.items = item
        self.round_of = np.repeat(np.arange(len(self.rounds)), [r.k for r in self.rounds])
        self.positions = log["position"].to_numpy(np.int64) - 1
        self.theta, self.theta_estimated = self._examination()
        self.rho, self.rho_mean = self._item_rates()

    @property
    def kinds(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rounds:
            out[r.kind] = out.get(r.kind, 0) + 1
        return out

    def _examination(self, min_rounds: int = 100, prior: float = 20.0) -> tuple[np.ndarray, bool]:
        """θ by position from the uniformly random lists (see :mod:`~mosaicrec.evaluation.slates`), θ_1 = 1."""
        length = max(r.k for r in self.rounds)
        random = [r for r in self.rounds if r.kind == "epsilon-greedy" and r.explored]
        rows = np.concatenate([np.arange(r.start, r.start + r.k) for r in random]) if random else np.empty(0, int)
        if len(random) < min_rounds or self.rewards[rows].sum() < 50:
            return np.ones(length), False
        pos, rew = self.positions[rows], self.rewards[rows]
        mean = rew.mean()
        rate = (np.bincount(pos, rew, length) + prior * mean) / (np.bincount(pos, minlength=length) + prior)
        return rate / rate[0], True

    def _item_rates(self, prior: float = 10.0) -> tuple[pd.Series, float]:
        """ρ̂(a): each item's rewards over its examinations (Σ θ_j of its rows), shrunk to the overall rate."""
        exam = self.theta[np.minimum(self.positions, len(self.theta) - 1)]
        mean = float(self.rewards.sum() / exam.sum()) if exam.sum() > 0 else 0.0
        frame = pd.DataFrame({"item": self.items, "r": self.rewards, "e": exam}).groupby("item")[["r", "e"]].sum()
        rho = (frame["r"] + prior * mean) / (frame["e"] + prior)
        return pd.Series(rho.to_numpy(np.float64), index=frame.index.astype(str)), mean

    def rates(self, items) -> np.ndarray:
        """ρ̂ of these items (the overall rate for an item the log never showed)."""
        return self.rho.reindex(pd.Index(np.asarray(items, dtype=object).astype(str))).fillna(self.rho_mean
                                                                                          ).to_numpy(np.float64)

    def q(self, items, positions: np.ndarray) -> np.ndarray:
        """The reward model q̂(a, j) = θ_j ρ̂(a)."""
        return self.theta[np.minimum(np.asarray(positions, np.int64), len(self.theta) - 1)] * self.rates(items)

    def logger_check(self, n_boot: int = 200, seed: int = 0) -> LoggerCheck:
        """The logging policy as a target on its own log (every weight 1; see :class:`LoggerCheck`)."""
        ones = np.ones(len(self.rewards))
        q_logged = self.q(self.items, self.positions)
        q_target = np.empty(len(self.rewards))
        mismatch = []
        have_dr = True
        for i, r in enumerate(self.rounds):
            rows = slice(r.start, r.start + r.k)
            mu_all = r.mu(np.arange(len(r.candidates)))
            if mu_all is None:  # Thompson sampling, or a list logged without its draw
                have_dr = False
                continue
            q_target[rows] = self.theta[np.minimum(np.arange(r.k), len(self.theta) - 1)] * (self.rates(r.candidates)
                                                                                             @ mu_all)
            if r.kind == "epsilon-greedy":
                expected = r.mu(r.logged)[np.arange(r.k), np.arange(r.k)]
                mismatch.append(float(np.max(np.abs(expected - self.propensities[rows]))))
        pi = np.array([1.0 if r.kind in ("epsilon-greedy", "deterministic") else np.nan for r in self.rounds])
        est = estimate(self.round_of, self.rewards, {"position": ones, "pbm": ones}, q_logged=q_logged,
                       q_target={"position": q_target, "pbm": q_target} if have_dr else None,
                       pi_round=pi if np.isfinite(pi).all() else None,
                       slate_length=np.array([r.k for r in self.rounds]), n_boot=n_boot, seed=seed)
        return LoggerCheck(est, float(self.rewards.mean()), max(mismatch) if mismatch else float("nan"))


def _reason_unsupported(kinds: dict[str, int], support: float, what: str) -> str:
    share = f"{1 - support:.0%} of the slots the target fills were impossible under the logging policy {what}"
    if set(kinds) == {"deterministic"}:
        return ("the log was made by a deterministic policy (propensity 1 everywhere): it shows only its own "
                f"lists, so a target that differs cannot be credited ({share}); serve with --explore")
    det = kinds.get("deterministic", 0)
    if det:
        total = sum(kinds.values())
        return (f"{share}; {det:,} of the {total:,} lists were chosen deterministically: evaluate on the "
                "exploring lists alone (--policy explore:epsilon-greedy or explore:plackett-luce)")
    return (f"{share}: the target shows items the logger could not (outside its candidates, or excluded for the "
            "user then: disliked or already seen); serve with more --explore-candidates, or lower --min-support "
            "to bound those slots instead")


@dataclass
class _Weighed:
    """One target on a log, row by row (see :func:`_weigh`): each family's weights and reward-model terms,
    the pseudo-inverse weight per round, and per family the target's supported slots and the reward
    model's value of the unsupported ones."""

    w: dict[str, np.ndarray]
    q_target: dict[str, np.ndarray]
    pi: np.ndarray | None
    cells: int
    supported: dict[str, float]
    imputed: dict[str, float]
    overlap: float


def _weigh(logged: LoggedRounds, lists: dict[str, list[str]]) -> _Weighed:
    """Per row the target's probability of the shown item at its position (``position``) and its exposure
    over the logger's (``pbm``), and what the target's own slots were worth to the reward model."""
    n, theta = len(logged.rewards), logged.theta
    w = {"position": np.zeros(n), "pbm": np.zeros(n)}
    q = {"position": np.zeros(n), "pbm": np.zeros(n)}
    pi = np.full(len(logged.rounds), np.nan)
    supported = {"position": 0.0, "pbm": 0.0, "pi": 0.0}
    imputed = {"position": 0.0, "pbm": 0.0, "pi": 0.0}
    pbm_ok = pi_ok = True
    cells = hits = 0
    for i, r in enumerate(logged.rounds):
        t_items = lists[r.rid][:r.k]
        m = len(t_items)
        rows = np.arange(r.start, r.start + r.k)
        shown = logged.items[rows]
        t_idx = np.array([r.index.get(a, -1) for a in t_items], np.int64)
        cells += m
        hits += len(set(t_items) & set(shown.tolist()))
        mu_t = r.mu(np.maximum(t_idx, 0)) if m else np.zeros((0, r.k))
        inside = t_idx >= 0
        if mu_t is None:  # Thompson / undrawn: a candidate may land anywhere; the other probabilities are not kept
            ok = {"position": inside, "pbm": inside}
            pbm_ok = False
        else:
            ok = {"position": inside & (mu_t[np.arange(m), np.arange(m)] > 0),
                  "pbm": inside & ((mu_t @ theta[:r.k]) > 0)}
        t_q = np.clip(logged.q(t_items, np.arange(m)), 0, None) if m else np.zeros(0)
        for family, good in ok.items():
            supported[family] += float(good.sum())
            q[family][rows[:m]] = np.where(good, t_q, 0.0)
            imputed[family] += float(np.clip(t_q[~good], 0, 1).sum())
        target_at = np.full(r.k, "", object)
        target_at[:m] = t_items
        w["position"][rows] = (shown == target_at) / logged.propensities[rows]
        if pbm_ok:
            exposure = (shown[:, None] == target_at[None, :]).astype(np.float64)
            w["pbm"][rows] = pbm_weights(exposure, r.mu(r.logged), theta[:r.k])
        if r.kind not in ("epsilon-greedy", "deterministic"):
            pi_ok = False
        elif m == r.k:
            pi[i] = pi_weights(len(r.candidates), r.epsilon, r.greedy, r.logged, t_idx)
        if np.isfinite(pi[i]):
            supported["pi"] += m
        else:
            imputed["pi"] += float(np.clip(t_q, 0, 1).sum())
    if not pbm_ok:
        del w["pbm"]
    return _Weighed(w, q, pi if pi_ok else None, cells, supported, imputed, hits / cells if cells else 0.0)


def _judge(est: dict[str, SlateEstimate], weighed: _Weighed, kinds: dict[str, int], n: int, min_support: float,
           min_ess: float) -> tuple[dict[str, SlateEstimate], dict[str, str]]:
    """The estimates that can be given (their unsupported slots bounded and imputed) and, for the others,
    why not."""
    out: dict[str, SlateEstimate] = {}
    refused: dict[str, str] = {}
    for name in ESTIMATORS:
        family = "pi" if name == "pi" else "pbm" if name.startswith("pbm") else "position"
        support = weighed.supported[family] / weighed.cells if weighed.cells else 0.0
        e = est.get(name)
        if e is None:
            refused[name] = ("the pseudo-inverse needs the logger's joint slot probabilities: known for ε-greedy "
                             "and deterministic lists only" if name == "pi" else
                             "the position-based model needs each shown item's probability at every position: "
                             "Thompson sampling, and lists logged without their draw, keep the shown position's only")
        elif support < min_support:
            refused[name] = _reason_unsupported(kinds, support, "(pbm: anywhere in the list)"
                                                if family == "pbm" else "")
        elif e.ess < min_ess or not np.isfinite(e.value):
            refused[name] = (f"effective sample size {e.ess:.1f} is below the floor of {min_ess:g}: too few logged "
                             "rows show what the target would (explore more, or log longer)")
        else:
            # the supported slots are estimated; the rest are bounded by [0, 1] (the interval) and imputed by the
            # reward model (the value). SNIPS's normaliser already spreads its estimate over the unsupported slots.
            u = 1.0 - support
            scale = support if name.endswith("snips") else 1.0
            imputed = min(weighed.imputed[family] / n, u)
            out[name] = SlateEstimate(e.value * scale + imputed, e.low * scale, e.high * scale + u, e.ess)
    return out, refused


def evaluate_on_log(log: pd.DataFrame | LoggedRounds, target: BaseRecommender | Listing, name: str | None = None, *,
                    slates: pd.DataFrame | None = None, answers: dict[str, pd.DataFrame] | None = None,
                    n_boot: int = 200, seed: int = 0, min_support: float = 0.95,
                    min_ess: float = 50.0) -> LogEvaluation:
    """The value of the target's lists on the logged traffic, by every slate estimator the log supports
    (see the module). ``log``: :func:`read_impressions`'s rows (with ``slates``, :func:`read_slates`), or
    :class:`LoggedRounds` built once for many targets. ``target``: a model (its listing: its own items,
    each trained user's training items as their events) or the listing of a store (whose live state should
    hold the users' events :func:`without_rewards`; ``answers``, from :func:`split_rewards`, then brings
    each user's history up to the time of each logged list)."""
    logged = log if isinstance(log, LoggedRounds) else LoggedRounds(log, slates)
    listing = target if isinstance(target, Listing) else Listing.of_model(target)
    rounds = pd.DataFrame({"request_id": [r.rid for r in logged.rounds], "user_id": [r.user for r in logged.rounds],
                           "k": [r.k for r in logged.rounds], "scenario": [r.scenario for r in logged.rounds]})
    lists, cold = target_lists(listing, rounds, answers)
    weighed = _weigh(logged, lists)
    est = estimate(logged.round_of, logged.rewards, weighed.w, q_logged=logged.q(logged.items, logged.positions),
                   q_target=weighed.q_target, pi_round=weighed.pi,
                   slate_length=np.array([r.k for r in logged.rounds]), n_boot=n_boot, seed=seed)
    n = len(logged.rewards)
    out, refused = _judge(est, weighed, logged.kinds, n, min_support, min_ess)
    per_policy = logged.log.groupby("policy")["request_id"].nunique().to_dict()
    cells = max(weighed.cells, 1)
    return LogEvaluation(name or listing.model.name, out, refused, len(logged.rounds), n, len(cold),
                         weighed.overlap, weighed.supported["position"] / cells, weighed.supported["pbm"] / cells,
                         float(logged.rewards.mean()), float(np.mean(logged.propensities < 1)),
                         [float(t) for t in logged.theta], logged.theta_estimated,
                         {str(k): int(v) for k, v in per_policy.items()}, lists)
