"""The new-item networks (DropoutNet, CLCRec, ALDI): each places items without events by what their content
says, on the scale of the least seen trained items, keeps ALS's warm factors, and needs the content to do it."""

import numpy as np
import pytest

from mosaicrec.data import cold_item_split
from mosaicrec.data.content import ItemContent
from mosaicrec.models import create, load_model
from mosaicrec.models.neural.cold import _project
from tests.conftest import planted, planted_content
from tests.models.test_multimodal import _in_group

NETS = ["dropoutnet", "clcrec", "aldi"]
FAST = {"iterations": 8, "factors": 8, "epochs": 60}


@pytest.fixture(scope="module")
def cold_case():
    x = planted(per_user=12)
    train, test = cold_item_split(x, 0.25, seed=1)
    return x, train, np.unique(test.items)


@pytest.mark.parametrize("name", NETS)
def test_new_items_are_placed_by_their_content_and_warm_items_keep_als(cold_case, name, tmp_path):
    x, train, cold = cold_case
    content = planted_content(x)
    model = create(name, FAST).fit(train, content=content)
    users = np.arange(x.n_users)
    ids, _ = model.recommend(users, k=5, candidates=cold)
    assert _in_group(ids, users) > 0.8  # chance is 0.25
    counts = np.bincount(train.items, minlength=x.n_items)
    rare = (counts > 0) & (counts <= np.quantile(counts[counts > 0], 0.25))
    norm = lambda rows: np.linalg.norm(model.V_[rows], axis=1).mean()
    assert norm(rare) / 1.5 < norm(cold) < 1.5 * norm(rare)
    als = create("als", {"iterations": 8, "factors": 8}).fit(train)
    warm = np.setdiff1d(np.arange(x.n_items), cold)
    np.testing.assert_allclose(model.V_[warm], als.V_[warm], rtol=1e-5, atol=1e-6)
    # the same seed trains the same generator; saving keeps it (no torch needed to score)
    again = create(name, FAST).fit(train, content=content)
    np.testing.assert_allclose(again.V_, model.V_, rtol=1e-5, atol=1e-6)
    model.save(tmp_path / name)
    np.testing.assert_array_equal(load_model(tmp_path / name).V_, model.V_)


@pytest.mark.parametrize("name", NETS)
def test_content_that_says_nothing_places_new_items_at_chance(cold_case, name):
    """The mutation check: the same content rows given to the wrong items (shuffled) leave the generator
    nothing to learn, and the new items' lists fall to chance."""
    x, train, cold = cold_case
    content = planted_content(x)
    perm = np.random.default_rng(3).permutation(x.n_items)
    shuffled = ItemContent(content.item_ids, {m: f[perm] for m, f in content.features.items()},
                           {m: k[perm] for m, k in content.masks.items()})
    users = np.arange(x.n_users)
    ids, _ = create(name, FAST).fit(train, content=shuffled).recommend(users, k=5, candidates=cold)
    assert _in_group(ids, users) < 0.5


def test_a_warm_fit_trains_no_generator(monkeypatch):
    """Where every item has events there is nothing to place: tuning's warm trials cost an ALS fit."""
    from mosaicrec.models.neural.cold import ALDI

    def trains(*_):
        raise AssertionError("the generator trained on a warm fit")

    monkeypatch.setattr(ALDI, "_map", trains)
    x = planted(per_user=12)
    model = create("aldi", FAST).fit(x, content=planted_content(x))
    als = create("als", {"iterations": 8, "factors": 8}).fit(x)
    np.testing.assert_array_equal(model.V_, als.V_)


def test_projection_keeps_the_trained_items_principal_directions():
    rng = np.random.default_rng(0)
    F = (rng.standard_normal((200, 3)) @ rng.standard_normal((3, 40)) * [[5, 2, 1][i % 3] for i in range(40)]
         + 0.01 * rng.standard_normal((200, 40))).astype(np.float32)
    fit = np.arange(200) < 150
    P = _project(F, fit, 3)
    assert P.shape == (200, 3)
    # the three directions span the trained rows: projecting back loses almost nothing
    centred = F[fit] - F[fit].mean(axis=0)
    basis, *_ = np.linalg.lstsq(P[fit], centred, rcond=None)
    assert np.linalg.norm(P[fit] @ basis - centred) < 0.01 * np.linalg.norm(centred)
    assert _project(F, fit, 0).shape == F.shape and _project(F, fit, 500).shape == F.shape
