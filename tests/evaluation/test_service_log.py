"""Off-policy evaluation on the service's own impression log: an exploring bandit serves, users reward a
hidden set of items more often than the rest (0.8 against 0.2), and the estimates of three other models'
values are checked against their true values."""

from __future__ import annotations

import numpy as np
import pytest

from mosaicrec.data.schema import Interactions
from mosaicrec.data.store import Store
from mosaicrec.errors import MosaicError
from mosaicrec.evaluation.slates import ESTIMATORS
from mosaicrec.evaluation.service_log import (LoggedRounds, evaluate_on_log, read_impressions, read_slates,
                                              target_lists, without_rewards)
from mosaicrec.models import create
from mosaicrec.models.training import TrainingInfo
from mosaicrec.ranking.export import Listing
from mosaicrec.ranking.live import LiveState
from mosaicrec.ranking.snapshot import Catalog
from mosaicrec.serving.bandit import BanditServing
from mosaicrec.serving.service import Service
from tests.serving.test_bandit_serving import N_ITEMS, _rewards, _setup


def _popular(good_first: bool, good: set[str], item_ids: np.ndarray) -> Interactions:
    """A popularity model's training data: users 0-59 with one event each (on item 0: what each excludes),
    then users 60+ who make the good (or the other) items the most popular."""
    favour = [k for k, i in enumerate(item_ids) if (str(i) in good) == good_first]
    users = list(range(60)) + [60 + j for j in range(len(favour)) for _ in range(len(favour) - j)]
    items = [0] * 60 + [favour[j] for j in range(len(favour)) for _ in range(len(favour) - j)]
    return Interactions.from_arrays(np.array(users), np.array(items), n_users=max(users) + 1, n_items=N_ITEMS)


P_GOOD, P_OTHER = 0.8, 0.2


def _truth(model, users: np.ndarray, good: set[str], k: int) -> float:
    """The expected reward per slot of the model's top-k lists for these (logged) users."""
    top, _ = model.recommend(np.array(sorted(set(users))), k=k)
    per_user = {u: np.mean([P_GOOD if str(model.item_ids[i]) in good else P_OTHER for i in row])
                for u, row in zip(sorted(set(users)), top)}
    return float(np.mean([per_user[u] for u in users]))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    x, store, content, good = _setup(tmp_path_factory.mktemp("log"))
    logger = BanditServing(policy={"policy": "epsilon-greedy", "epsilon": 0.5}, candidates=N_ITEMS, dims=6)
    service = Service(create("mostpop").fit(x), store, content, bandit=logger)
    users, rng = [], np.random.default_rng(0)
    for step in range(300):
        res = service.recommend(str(step % 60), 5, exclude_seen=False)
        users.append(step % 60)
        rows = _rewards(res, good)
        p = np.where(rows["weight"] == 1.0, P_GOOD, P_OTHER)
        rows["weight"] = (rng.random(len(rows)) < p).astype(float)
        rows["timestamp"] += 10 * step  # one user's events of different lists never share a key
        service.add_events(rows)
    service.impressions.flush()
    service.close()
    return x, store, good, np.array(users)


def test_rewards_are_joined_to_the_lists_that_showed_them(served):
    x, store, good, users = served
    with Store(store, read_only=True) as st:
        log = read_impressions(st, threshold=1.0)
    assert len(log) == 1500 and log["request_id"].nunique() == 300
    assert set(log["policy"]) == {"bandit:epsilon-greedy"}
    liked = log["item_id"].astype(str).isin(good)
    # rewards follow the hidden rates: 0.8 on the good items, 0.2 on the rest
    assert abs(log.loc[liked, "reward"].mean() - P_GOOD) < 0.06 and abs(log.loc[~liked, "reward"].mean() - P_OTHER) < 0.08
    with Store(store, read_only=True) as st:  # each reward is the event that names the list and the item
        ev = st.con.execute("SELECT count(*) FROM events WHERE weight >= 1 AND context LIKE '%request_id%'").fetchone()[0]
    assert ev == log["reward"].sum()
    assert (log["propensity"] < 1).mean() > 0.5


def _log(store, **kwargs):
    with Store(store, read_only=True) as st:
        log = read_impressions(st, threshold=1.0, **kwargs)
        return log, read_slates(st, set(log["request_id"]))


def test_estimates_find_each_targets_true_value(served):
    x, store, good, users = served
    log, slates = _log(store)
    assert len(slates) == 300 and set(slates["kind"]) == {"epsilon-greedy"}
    logged = LoggedRounds(log, slates)
    rounds_users = np.array([int(u) for u in log.drop_duplicates("request_id")["user_id"]])
    results = {}
    targets = {"good first": create("mostpop").fit(_popular(True, good, x.item_ids)),
               "others first": create("mostpop").fit(_popular(False, good, x.item_ids)),
               "ease": create("ease", {"reg": 5.0}).fit(x)}
    for name, model in targets.items():
        truth = _truth(model, rounds_users, good, 5)
        ev = evaluate_on_log(logged, model, name, n_boot=200, seed=0, min_ess=10, min_support=0.8)
        results[name] = (truth, ev)
        assert ev.target == name and ev.rounds == 300 and ev.rows == 1500 and ev.cold_rounds == 0
        assert 0.03 < ev.overlap < 0.9  # ε = 0.5 over 40 items: the lists of 5 show some of any target's items
        # every candidate was possible at every position, but a user's disliked items (rewards of 0) left
        # their later lists: a target that shows one there was not supported; the interval's top says so
        assert 0.8 < ev.support == ev.support_pbm < 1.0
        assert set(ev.estimates) | set(ev.refused) == set(ESTIMATORS)
        for est_name, est in ev.estimates.items():
            assert est.low - 0.03 <= truth <= est.high + 0.03, (name, est_name, est, truth)
            assert est.ess > 10
        for est_name in ("pbm-snips", "pbm-dr"):  # per position, 300 lists leave ESS ~20: only the interval
            assert abs(ev.estimates[est_name].value - truth) < 0.1, (name, est_name, ev.estimates[est_name], truth)
        # the position-based model credits a target's item wherever the logger showed it: more rows count
        assert ev.estimates["pbm-ips"].ess > 2 * ev.estimates["ips"].ess
    (t_good, e_good), (t_bad, e_bad) = results["good first"], results["others first"]
    assert t_good > 0.7 and t_bad < 0.3
    assert e_good.estimates["pbm-snips"].low > e_bad.estimates["pbm-snips"].high


def test_the_logger_finds_its_own_logged_value(served):
    log, slates = _log(served[1])
    check = LoggedRounds(log, slates).logger_check(n_boot=200)
    assert check.failed == [] and check.propensity_mismatch < 1e-12  # propensities equal their draws' again
    assert check.estimates["ips"].value == pytest.approx(log["reward"].mean())
    assert check.estimates["pi"].value == pytest.approx(log["reward"].mean())
    dr = check.estimates["dr"]
    assert dr.low <= log["reward"].mean() <= dr.high


def test_users_a_target_does_not_know_get_its_popular_list_and_are_counted(served):
    x, store, good, users = served
    with Store(store, read_only=True) as st:
        log = read_impressions(st, threshold=1.0)
    few = Interactions.from_arrays(np.array([0, 1, 1]), np.array([0, 1, 2]), n_users=2, n_items=N_ITEMS)
    ev = evaluate_on_log(log, create("mostpop").fit(few))
    assert ev.rounds == 300 and ev.cold_rounds == 290  # users 0 and 1 asked 5 times each; the rest are new
    target = evaluate_on_log(log[log["user_id"] != "0"], create("mostpop").fit(few))
    assert target.rounds == 295 and target.cold_rounds == 290
    with pytest.raises(MosaicError, match="empty"):
        evaluate_on_log(log.iloc[:0], create("mostpop").fit(few))
    with Store(store, read_only=True) as st:
        assert read_impressions(st, policy="greedy").empty
        assert len(read_impressions(st, since=0.0)) == 1500


def test_a_target_is_asked_with_the_users_history_less_the_logged_rewards(served):
    """Through the store: the target's list for a logged round leaves out what the user did before the log
    (their history), never the rewards of the logged lists, which are what it is measured by."""
    x, store, good, users = served
    with Store(store, read_only=True) as st:
        log = read_impressions(st, threshold=1.0)
        events = st.events_frame(("user_id", "item_id", "timestamp", "weight", "context"))
    history = without_rewards(events, set(log["request_id"]))
    assert len(events) - len(history) == 1500  # one reward event per shown item, all left out
    assert not history["context"].astype(str).str.contains("request_id").any()
    assert len(without_rewards(events, set())) == len(events)  # rewards of other lists stay history
    model = create("mostpop").fit(_popular(True, good, x.item_ids))
    ids = [str(i) for i in model.item_ids]
    live = LiveState(1.0)
    live.load(history, {})
    listing = Listing(model, TrainingInfo(threshold=1.0), Catalog.build(ids, ids, [{}] * len(ids)), None, live)
    first = log.drop_duplicates("request_id").assign(k=5)
    lists, cold = target_lists(listing, first[["request_id", "user_id", "k", "scenario"]])
    assert len(lists) == 300 and not cold
    for rid, user in first[["request_id", "user_id"]].itertuples(index=False):
        assert len(lists[rid]) == 5 and not set(live.get(user).positives) & set(lists[rid])


def test_cli_ope_prints_and_writes_the_estimates(served, tmp_path):
    import json
    import shutil

    from tests.test_cli import cli

    x, store, good, users = served
    copy = tmp_path / "s.duckdb"  # a read of the log must not need the service's store to itself
    shutil.copy(store, copy)
    create("mostpop").fit(_popular(True, good, x.item_ids)).save(tmp_path / "good")
    create("mostpop").fit(_popular(False, good, x.item_ids)).save(tmp_path / "bad")
    proc = cli("ope", "--model", "good", "--model", "bad", "--store", str(copy), "--threshold", "1",
               "--min-support", "0.8", "--out", "ope.json", cwd=tmp_path)
    assert "300 lists (300 epsilon-greedy), 1,500 shown items" in proc.stdout
    assert "self-check: the logging policy as a target finds its logged value" in proc.stdout
    assert "by pbm-dr: good" in proc.stdout
    got = json.loads((tmp_path / "ope.json").read_text())
    by = {t["target"]: t["estimates"]["pbm-snips"]["value"] for t in got["targets"]}
    assert by["good"] > 0.7 > 0.3 > by["bad"]
    assert got["logger"]["failed"] == [] and got["kinds"] == {"epsilon-greedy": 300}
    strict = cli("ope", "--model", "good", "--store", str(copy), "--threshold", "1", "--min-ess", "100000",
                 cwd=tmp_path)
    assert "good: pbm-ips, pbm-snips, pbm-dr cannot be estimated: effective sample size" in strict.stdout
    assert "no target could be estimated" in strict.stdout
    bad = cli("ope", "--model", "good", "--store", str(copy), "--policy", "greedy", cwd=tmp_path, check=False)
    assert bad.returncode == 1 and "no lists of policy 'greedy'" in bad.stderr
    missing = cli("ope", "--model", "good", "--store", str(tmp_path / "nope.duckdb"), cwd=tmp_path, check=False)
    assert missing.returncode == 1 and "no store" in missing.stderr


def _serve_lists(service, x, good, n: int, seed: int = 0) -> None:
    """``n`` lists of 5 for users in turn, each shown item liked (weight 1) with the hidden rates, else
    disliked (weight 0), posted naming the list."""
    rng = np.random.default_rng(seed)
    for step in range(n):
        res = service.recommend(str(step % 60), 5)
        rows = _rewards(res, good)
        p = np.where(rows["weight"] == 1.0, P_GOOD, P_OTHER)
        rows["weight"] = (rng.random(len(rows)) < p).astype(float)
        rows["timestamp"] += 10 * step
        service.add_events(rows)
    service.impressions.flush()


@pytest.fixture(scope="module")
def greedy_log(tmp_path_factory):
    """A service with no exploration (greedy lists, propensity 1), its model saved as a target too."""
    from mosaicrec.models.training import TrainingInfo

    tmp = tmp_path_factory.mktemp("greedy")
    x, store, _, good = _setup(tmp)
    info = TrainingInfo(threshold=1.0)
    served = create("mostpop").fit(x)
    for name, model in (("served", served), ("other", create("mostpop").fit(_popular(False, good, x.item_ids)))):
        model.save(tmp / name)
        info.save(tmp / name)
    service = Service(served, store, info=info)
    _serve_lists(service, x, good, 100)
    service.close()
    return tmp, store


def test_a_deterministic_log_is_refused_with_the_reason_and_its_own_policy_gets_the_logged_value(greedy_log):
    from mosaicrec.app.ope import evaluate_targets

    tmp, store = greedy_log
    report = evaluate_targets([tmp / "served", tmp / "other"], store, threshold=1.0, min_ess=1)
    served, other = report.targets
    assert report.kinds == {"deterministic": 100} and report.stochastic_rows == 0.0
    assert not other.estimates and set(other.refused) == set(ESTIMATORS)
    assert all("deterministic policy" in why and "--explore" in why for why in other.refused.values())
    assert other.support < 0.5  # the other target's lists were mostly impossible under the greedy logger
    # the logger's own policy as a target: every weight is 1, so every estimator gives the logged value
    assert served.support == 1.0 and set(served.estimates) == set(ESTIMATORS)
    for name, e in served.estimates.items():
        assert e.value == pytest.approx(served.logged_value, abs=1e-12), name
    assert report.logger.failed == []


def test_a_plackett_luce_log_keeps_its_draws_checks_itself_and_forgets_an_erased_user(tmp_path):
    from mosaicrec.ranking.explore import ExploreConfig

    x, store, _, good = _setup(tmp_path)
    service = Service(create("mostpop").fit(x), store,
                      explore=ExploreConfig(policy="plackett-luce", temperature=1.0, candidates=20, samples=500))
    _serve_lists(service, x, good, 120)
    assert service.health()["explore"]["policy"] == "plackett-luce"
    log, slates = service.store.impressions(), service.store.slates()
    assert len(slates) == 120 and (slates["kind"] == "plackett-luce").all()
    assert slates["candidates"].map(len).eq(20).all() and (log["propensity"] < 1).all()
    with Store.open_snapshot(_snapshot(service, tmp_path)) as st:
        log = read_impressions(st, threshold=1.0)
        rounds = LoggedRounds(log, read_slates(st))
    assert rounds.kinds == {"plackett-luce": 120}
    check = rounds.logger_check(n_boot=200)
    assert check.failed == [] and "pi" not in check.estimates  # its joint slot probabilities are not known
    service.delete_user("0")
    assert "0" not in set(service.store.slates()["user_id"]) and "0" not in set(service.store.impressions()["user_id"])
    service.close()


def _snapshot(service, tmp_path):
    folder = tmp_path / "snap"
    info = service.export_snapshot(folder, log=True)
    assert info["counts"]["slates"] == 120 and info["counts"]["impressions"] == 600
    return folder
