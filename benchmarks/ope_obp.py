"""Benchmark: our off-policy estimators against Open Bandit Pipeline's on the same logged data (issue 33).

Open Bandit Pipeline (``obp`` 0.5.7, the reference library) is the peer: its ``InverseProbabilityWeighting``,
``SelfNormalizedInverseProbabilityWeighting`` and ``DoublyRobust`` are run beside ours on the same rows,
the same target and the same reward model, and the largest difference is reported (the goal: ≤ 1e-6).

Three logs:

* **obp synthetic** — OBP's own ``SyntheticBanditDataset`` (10 actions, binary rewards, 10,000 rounds), a
  stochastic target (a softmax over the true expected rewards) and OBP's ``RegressionModel`` (logistic) as
  the reward model: our :mod:`mosaicrec.evaluation.slates` functions against OBP's estimators.
* **service, ε-greedy** and **service, Plackett–Luce** — a real :class:`~mosaicrec.serving.service.Service`
  over a generated catalog (300 users, 120 items) serving EASE with ``explore`` on, 1,500 lists of 5 whose
  items users like with known probabilities; then ``mosaicrec ope``'s code
  (:func:`mosaicrec.app.ope.evaluate_targets`) estimates three trained targets from the store. The same
  rows go to OBP with their positions (``position``, ``action_dist`` of shape rows × items × 5: the target's
  list, ``estimated_rewards_by_reg_model``: our reward model q̂ = θ_j ρ̂(item)). Both loggers draw from
  every allowed item, so every target is fully supported and ours gives its estimators' plain values (a
  partly supported target's are bounded and imputed, which OBP does not do).

Seconds for each side are reported too (the ratio ours / OBP). Needs ``obp`` (``make bench`` installs it:
``pip install --no-deps --ignore-requires-python obp==0.5.7``, its dependencies being in the bench extra).
Writes benchmarks/results/ope_obp.json (+ .md).

Usage: python benchmarks/ope_obp.py
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mosaicrec.evaluation.provenance import write_result

RESULTS = Path(__file__).parent / "results"
TOLERANCE = 1e-6


def obp_estimates(reward, action, pscore, action_dist, q_hat, position=None) -> tuple[dict[str, float], float]:
    from obp.ope import DoublyRobust, InverseProbabilityWeighting, SelfNormalizedInverseProbabilityWeighting

    t0 = time.perf_counter()
    kw = {"reward": reward, "action": action, "pscore": pscore, "action_dist": action_dist, "position": position}
    out = {"ips": InverseProbabilityWeighting().estimate_policy_value(**kw),
           "snips": SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(**kw),
           "dr": DoublyRobust().estimate_policy_value(**kw, estimated_rewards_by_reg_model=q_hat)}
    return {k: float(v) for k, v in out.items()}, time.perf_counter() - t0


def synthetic_check() -> dict:
    """OBP's synthetic data, a stochastic target, OBP's reward model."""
    from obp.dataset import SyntheticBanditDataset, logistic_reward_function
    from obp.ope import RegressionModel
    from sklearn.linear_model import LogisticRegression

    from mosaicrec.evaluation.slates import dr, ips, snips

    data = SyntheticBanditDataset(n_actions=10, dim_context=5, reward_type="binary",
                                  reward_function=logistic_reward_function, random_state=12345)
    fb = data.obtain_batch_bandit_feedback(n_rounds=10_000)
    logits = fb["expected_reward"] * 8
    pi = np.exp(logits - logits.max(axis=1, keepdims=True))
    pi /= pi.sum(axis=1, keepdims=True)
    action_dist = pi[:, :, None]
    q_hat = RegressionModel(n_actions=10, base_model=LogisticRegression(max_iter=1000), len_list=1).fit_predict(
        context=fb["context"], action=fb["action"], reward=fb["reward"], n_folds=2, random_state=12345)
    theirs, t_obp = obp_estimates(fb["reward"], fb["action"], fb["pscore"], action_dist, q_hat)
    t0 = time.perf_counter()
    rows = np.arange(fb["n_rounds"])
    w = pi[rows, fb["action"]] / fb["pscore"]
    ours = {"ips": ips(fb["reward"], w), "snips": snips(fb["reward"], w),
            "dr": dr(fb["reward"], w, q_hat[rows, fb["action"], 0], np.sum(pi * q_hat[:, :, 0], axis=1))}
    t_ours = time.perf_counter() - t0
    truth = float(np.mean(np.sum(pi * fb["expected_reward"], axis=1)))
    return {"log": "obp synthetic (10,000 rounds, 10 actions)", "target": "softmax(8 × expected reward)",
            "truth": truth, "ours": ours, "obp": theirs, "seconds_ours": t_ours, "seconds_obp": t_obp}


def _service_log(tmp: Path, explore: dict, seed: int = 0) -> tuple[Path, list[Path]]:
    """A generated catalog in a store, EASE serving it with ``explore``, 1,500 lists of 5 with rewards."""
    from mosaicrec.data.store import Store
    from mosaicrec.data.synthetic import synthetic_catalog
    from mosaicrec.models import create
    from mosaicrec.models.training import TrainingInfo
    from mosaicrec.ranking.explore import ExploreConfig
    from mosaicrec.serving.service import Service

    ds, _ = synthetic_catalog(n_users=300, n_items=120, n_events=6_000, seed=seed)
    x = ds.interactions
    store = tmp / "store.duckdb"
    items = pd.DataFrame({"item_id": x.item_ids, "title": [f"item {i}" for i in x.item_ids], "texts": [{}] * x.n_items,
                          "image": None, "audio": None, "attributes": [{}] * x.n_items})
    coo = x.matrix.tocoo()
    events = pd.DataFrame({"user_id": x.user_ids[coo.row], "item_id": x.item_ids[coo.col], "timestamp": 1,
                           "event_type": "like", "weight": 1.0, "context": "{}"})
    with Store(store) as st:
        st.ingest(items=items, events=events)
    info = TrainingInfo(threshold=1.0)
    folders = []
    for name, params in (("mostpop", {}), ("ease", {"reg": 50.0}), ("itemknn", {"neighbors": 20})):
        model = create(name, params).fit(x)
        folder = tmp / name
        model.save(folder)
        info.save(folder)
        folders.append(folder)
    rng = np.random.default_rng(seed)
    liked = 1 / (1 + np.exp(-rng.standard_normal((x.n_users, x.n_items)) - 1.0))  # each user's like probability
    service = Service(create("ease", {"reg": 50.0}).fit(x), store, info=info, explore=ExploreConfig(**explore))
    index = {str(i): k for k, i in enumerate(x.item_ids)}
    for t in range(1_500):
        u = int(rng.integers(x.n_users))
        res = service.recommend(str(x.user_ids[u]), 5)
        rows = [{"user_id": res.user_id, "item_id": e.item_id, "timestamp": 10 + t, "event_type": "click",
                 "weight": 1.0, "context": json.dumps({"request_id": res.request_id})}
                for e in res.items if rng.random() < 0.5 * liked[u, index[e.item_id]]]
        if rows:
            service.add_events(pd.DataFrame(rows))
    service.impressions.flush()
    service.close()
    return store, folders


def service_check(explore: dict) -> dict:
    """``mosaicrec ope``'s estimates on a service's log against OBP's on the same rows."""
    from mosaicrec.app.ope import evaluate_targets
    from mosaicrec.data.store import Store
    from mosaicrec.evaluation.service_log import LoggedRounds, read_impressions, read_slates

    with tempfile.TemporaryDirectory() as d:
        store, folders = _service_log(Path(d), explore)
        t0 = time.perf_counter()
        report = evaluate_targets(folders, store, threshold=1.0, boot=0, min_ess=0.0, min_support=0.0)
        t_ours = time.perf_counter() - t0
        with Store(store, read_only=True) as st:
            log = read_impressions(st, 1.0)
            rounds = LoggedRounds(log, read_slates(st))
    codes = {a: i for i, a in enumerate(sorted(set(rounds.items)))}
    k = max(r.k for r in rounds.rounds)
    action = np.array([codes[a] for a in rounds.items])
    out = []
    for ev in report.targets:
        for a in {a for items in ev.lists.values() for a in items}:
            codes.setdefault(a, len(codes))
        n_actions = len(codes)
        action_dist = np.zeros((len(action), n_actions, k))
        items = sorted(codes, key=codes.get)
        q_table = np.stack([rounds.q(items, np.full(n_actions, j)) for j in range(k)], axis=1)  # actions × k
        for r in rounds.rounds:
            for j, a in enumerate(ev.lists[r.rid][:r.k]):
                action_dist[r.start:r.start + r.k, codes[a], j] = 1.0
        q_hat = np.broadcast_to(q_table[None], (len(action), n_actions, k))
        theirs, t_obp = obp_estimates(rounds.rewards, action, rounds.propensities, action_dist, q_hat,
                                      position=rounds.positions)
        ours = {n: ev.estimates[n].value for n in ("ips", "snips", "dr")}
        out.append({"target": ev.target, "support": ev.support, "ours": ours, "obp": theirs,
                    "seconds_ours": t_ours / len(report.targets), "seconds_obp": t_obp})
    policy = explore["policy"] + (f" ε = {explore['epsilon']}" if "epsilon" in explore else
                                  f" temperature {explore['temperature']}")
    return {"log": f"service, {policy} ({report.lists:,} lists of 5)", "targets": out}


def render(out: dict) -> str:
    lines = ["| log | target (support) | estimator | ours | Open Bandit Pipeline | difference |",
             "|---|---|---|---|---|---|"]
    for case in out["cases"]:
        targets = case.get("targets") or [case]
        for t in targets:
            for n in ("ips", "snips", "dr"):
                support = f" ({t['support']:.0%})" if "support" in t else ""
                lines.append(f"| {case['log']} | {t['target']}{support} | {n} | {t['ours'][n]:.6f} | "
                             f"{t['obp'][n]:.6f} | "
                             f"{abs(t['ours'][n] - t['obp'][n]):.1e} |")
    lines += ["", f"Largest difference: {out['max_difference']:.1e} (goal ≤ {TOLERANCE:g}): "
              f"{'PASS' if out['passed'] else 'FAIL'}. Seconds for the synthetic log's three estimates: ours "
              f"{out['cases'][0]['seconds_ours']:.4f}, OBP {out['cases'][0]['seconds_obp']:.4f} "
              f"(ratio {out['cases'][0]['seconds_ours'] / out['cases'][0]['seconds_obp']:.2f})."]
    return "\n".join(lines) + "\n"


def main() -> None:
    cases = [synthetic_check(),
             service_check({"policy": "epsilon-greedy", "epsilon": 0.5, "candidates": 0}),
             service_check({"policy": "plackett-luce", "temperature": 0.5, "candidates": 0})]
    diffs = [abs(t["ours"][n] - t["obp"][n]) for c in cases for t in (c.get("targets") or [c])
             for n in ("ips", "snips", "dr")]
    out = {"cases": cases, "max_difference": float(max(diffs)), "tolerance": TOLERANCE,
           "passed": bool(max(diffs) <= TOLERANCE)}
    table = render(out)
    path = write_result(RESULTS, "ope_obp", out, table)
    print(table)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
