"""The sequential model (``sasrec``) on generated sequences whose next item follows from the last one."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mosaicrec.data import Interactions
from mosaicrec.data.content import ItemContent
from mosaicrec.data.splits import leave_last_out
from mosaicrec.errors import ConfigError
from mosaicrec.models import create, load_model
from mosaicrec.models.neural.sequential import pad_left, target_codes, user_sequences, windows
from mosaicrec.models.query import Query

FAST = {"dim": 16, "max_len": 8, "layers": 1, "epochs": 60, "lr": 5e-3, "dropout": 0.0, "early_stopping": 0,
        "batch_size": 64, "threads": 1}


def cycles(n_users: int = 120, n_items: int = 30, length: int = 12, seed: int = 0) -> Interactions:
    """Each user walks the catalog in steps of +1 or +2 (their own step), from a random start: the next item
    follows from the last ones, while which items a user holds says little about which comes next."""
    rng = np.random.default_rng(seed)
    users, items, times = [], [], []
    for u in range(n_users):
        step, start = 1 + u % 2, int(rng.integers(n_items))
        for t in range(length):
            users.append(u), items.append((start + step * t) % n_items), times.append(1000 * u + t)
    # events logged out of time order, so the model must sort them by time
    perm = rng.permutation(len(users))
    return Interactions.from_arrays(np.array(users)[perm], np.array(items)[perm],
                                    timestamps=np.array(times)[perm], n_users=n_users, n_items=n_items)


def content_for(n_items: int, dim: int = 24, seed: int = 0) -> ItemContent:
    """A random embedding per item: enough for a content-only model to tell items apart."""
    rng = np.random.default_rng(seed)
    return ItemContent(np.arange(n_items).astype(str).astype(object),
                       {"text": rng.standard_normal((n_items, dim)).astype(np.float32)},
                       {"text": np.ones(n_items, bool)})


def hit_rate(model, train: Interactions, test: Interactions, k: int = 1) -> float:
    users = np.unique(test.users)
    top, _ = model.recommend(users, k=k)
    want = dict(zip(test.users.tolist(), test.items.tolist()))
    return float(np.mean([want[u] in top[r] for r, u in enumerate(users)]))


def test_windows_make_every_later_event_a_target_once_and_pad_on_the_left():
    seqs = [np.arange(10), np.array([3, 4]), np.array([7])]
    inputs, targets = windows(seqs, 4)
    got = sorted(int(t) - 1 for t in targets[targets > 0])
    assert got == sorted(list(range(1, 10)) + [4])  # a single event is no transition
    for i, t in zip(inputs, targets):  # each target is the input shifted by one, padding on the left only
        real = t > 0
        assert (i > 0).tolist() == real.tolist()
        assert real.tolist() == sorted(real.tolist())
        assert (t[real] - 1 == i[real]).all() or (np.diff(i[real]) == 1).all()
    assert pad_left([np.array([5, 6])], 4).tolist() == [[0, 0, 6, 7]]


def test_learns_the_order_that_a_set_of_items_cannot_show():
    x = cycles()
    train, test = leave_last_out(x)
    sas = create("sasrec", FAST).fit(train)
    ease = create("ease", {"reg": 10.0}).fit(train)
    assert hit_rate(sas, train, test) > 0.8
    assert hit_rate(ease, train, test) < 0.5  # co-occurrence sees the neighbours, not which one is next


def test_a_trained_users_sequence_holds_only_training_events_in_time_order():
    x = cycles(n_users=20)
    train, test = leave_last_out(x)
    model = create("sasrec", {**FAST, "epochs": 1}).fit(train)
    for u, seq in enumerate(user_sequences(train)):
        assert (model.sequences_[u][model.sequences_[u] > 0] - 1).tolist() == seq[-FAST["max_len"]:].tolist()
    # each user's last real position is their latest training event, never the held-out one after it
    latest = {u: x.items[(x.users == u)][np.argmax(x.timestamps[x.users == u])] for u in np.unique(test.users)}
    assert all(int(model.sequences_[u][-1]) - 1 != item for u, item in latest.items())


def test_padding_and_later_events_never_reach_an_earlier_position():
    torch = pytest.importorskip("torch")
    model = create("sasrec", {**FAST, "epochs": 2}).fit(cycles(n_users=20))
    model.encode(np.zeros((1, FAST["max_len"]), np.int64))  # builds the network
    net = model._net
    seq = torch.tensor([[0, 0, 0, 0, 5, 9, 2, 7]])
    with torch.no_grad():
        full = net(seq)
        short = net(seq[:, 3:])  # the same events with less padding
        changed = seq.clone()
        changed[0, 6] = 11  # a later event
        after = net(changed)
    assert torch.allclose(full[0, -1], short[0, -1], atol=1e-5)
    assert torch.allclose(full[0, 4:6], after[0, 4:6], atol=1e-5)  # positions before the change
    assert not torch.allclose(full[0, 6], after[0, 6], atol=1e-3)
    assert (full[0, :4] == 0).all()  # padding rows carry nothing
    assert torch.isfinite(full).all()


def test_a_history_query_is_ordered_by_its_times():
    x = cycles()
    train, test = leave_last_out(x)
    model = create("sasrec", FAST).fit(train)
    seq = user_sequences(train)[0]
    forward = Query.from_events([seq.tolist()], x.n_items, timestamps=[list(range(len(seq)))])
    backward = Query.from_events([seq.tolist()], x.n_items, timestamps=[list(range(len(seq)))[::-1]])
    np.testing.assert_allclose(model.score(forward)[0], model.score(np.array([0]))[0], atol=1e-4)
    assert np.argmax(model.score(forward)[0]) != np.argmax(model.score(backward)[0])


def test_save_and_load_give_the_same_scores(tmp_path):
    x = cycles(n_users=30)
    model = create("sasrec", {**FAST, "epochs": 3, "items": "both"}).fit(x, content=content_for(x.n_items))
    model.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    users = np.arange(x.n_users)
    np.testing.assert_allclose(again.score(users), model.score(users), atol=1e-5)


def test_content_items_score_items_that_had_no_training_event():
    x = cycles(n_items=30)
    keep = x.items < 25  # items 25-29 never seen in training
    model = create("sasrec", {**FAST, "epochs": 5, "items": "content"}).fit(x.subset(keep),
                                                                         content=content_for(x.n_items))
    scores = model.score(np.arange(5))[:, 25:]
    assert np.isfinite(scores).all() and scores.std() > 1e-4
    with pytest.raises(ConfigError, match="reads item content"):
        create("sasrec", {"items": "content"}).fit(x)


def test_early_stopping_chooses_an_epoch_on_the_training_part_only():
    x = cycles()
    train, _ = leave_last_out(x)
    model = create("sasrec", {**FAST, "epochs": 30, "early_stopping": 3}).fit(train)
    assert 0 <= model.best_epoch_ < 30
    assert any(r.get("refit") for r in model.history_)  # the chosen epochs were trained again on everything


def two_surfaces(n_users: int = 120, half: int = 15, length: int = 12, seed: int = 0) -> Interactions:
    """Each user walks ``half`` positions in steps of 1 or 2; each event happens on surface "a" or "b" at
    random, and on "b" the user takes the walk's item from the catalog's second half. The sequence says where
    the walk is; only the surface of the next event says which half it comes from."""
    rng = np.random.default_rng(seed)
    users, items, times, surface = [], [], [], []
    for u in range(n_users):
        step, start = 1 + u % 2, int(rng.integers(half))
        for t in range(length):
            on_b = bool(rng.random() < 0.5)
            users.append(u), times.append(1000 * u + t), surface.append("b" if on_b else "a")
            items.append((start + step * t) % half + (half if on_b else 0))
    x = Interactions.from_arrays(np.array(users), np.array(items), timestamps=np.array(times),
                                 n_users=n_users, n_items=2 * half)
    return replace(x, context={"scenario": np.array(surface, dtype=object)})


def test_context_codes_line_up_with_the_targets_of_the_windows():
    seqs = [np.arange(10), np.array([3, 4]), np.array([7])]
    codes = [s % 3 for s in seqs]  # 0 (no context) on every third item
    _, targets = windows(seqs, 4)
    got = target_codes(codes, 4)
    real = targets > 0
    assert got.shape == targets.shape and (got[~real] == 0).all()
    np.testing.assert_array_equal(got[real], (targets[real] - 1) % 3)


def test_the_next_events_context_tells_what_the_sequence_cannot():
    x = two_surfaces()
    train, test = leave_last_out(x)
    plain = create("sasrec", FAST).fit(train)
    ctx = create("sasrec", {**FAST, "context": "scenario", "min_context_events": 1}).fit(train)
    users = test.users
    surface = list(test.context["scenario"])
    hit = {}
    for name, model in (("plain", plain), ("context", ctx)):
        top, _ = model.recommend(users, k=1, context=surface)
        hit[name] = float(np.mean(top[:, 0] == test.items))
    assert hit["context"] > 0.8 and hit["plain"] < 0.65, hit
    # a request without a context, or with one never seen in training, gets the unshifted query
    np.testing.assert_allclose(ctx.score(users, context="a-new-surface"), ctx.score(users), atol=1e-6)
    np.testing.assert_allclose(ctx.query_factors(Query(users=users)), ctx.encode(ctx.sequences_[users]),
                               atol=1e-6)
    assert not np.allclose(ctx.score(users, context="a"), ctx.score(users, context="b"))


def test_a_context_sasrec_saves_and_loads_its_contexts(tmp_path):
    x = two_surfaces(n_users=30)
    model = create("sasrec", {**FAST, "epochs": 3, "context": "scenario"}).fit(x)
    model.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    users = np.arange(x.n_users)
    for value in ("a", "b", None):
        np.testing.assert_allclose(again.score(users, context=value), model.score(users, context=value),
                                   atol=1e-5)
    assert list(again.contexts_) == ["a", "b"] and again.knows_context("b")
    with pytest.raises(ConfigError, match="event context 'surface'"):
        create("sasrec", {**FAST, "context": "surface"}).fit(x)
