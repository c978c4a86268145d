import numpy as np
import pytest
import scipy.sparse as sp

from mosaicrec.data import Interactions, random_holdout
from mosaicrec.errors import ConfigError, NotFittedError
from mosaicrec.models import MODELS, ItemKNN, create, load_model
from mosaicrec.models.query import Query
from mosaicrec.models import _kernels
from tests.conftest import planted

NEURAL = {"epochs": 15, "dim": 16, "batch_size": 256, "threads": 1, "lr": 0.02}
MULTITASK = {"tasks": [{"name": "taken", "column": "weight"}], "blend": {"taken": 1.0},
             "features": ["scenario"], "epochs": 2, "early_stopping": 0, "threads": 1, "dim": 8, "min_events": 1}
FAST = {"bpr": {"iterations": 30, "num_threads": 1, "factors": 16, "learning_rate": 0.05},
        "als": {"iterations": 5, "factors": 8}, "biasedmf": {"epochs": 10, "factors": 8},
        "ease": {"reg": 10.0}, "itemknn": {"neighbors": 10}, "content-ease": {"reg": 100.0},
        "content-map": {"iterations": 5, "factors": 8},
        "content-knn": {"neighbors": 10}, "hybrid": NEURAL, "vbpr": NEURAL, "graph": NEURAL,
        "two-tower": NEURAL,
        "scenario-bpr": {"iterations": 30, "num_threads": 1, "factors": 16, "learning_rate": 0.05, "min_events": 1},
        "sasrec": {"dim": 8, "max_len": 6, "layers": 1, "epochs": 2, "early_stopping": 0, "threads": 1},
        # planted events carry no outcome columns: one task on the event's weight, the scenario as feature
        "multitask": MULTITASK,
        "per-context": {"base": "multitask", "params": MULTITASK, "min_events": 1}}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_recommend_never_returns_seen_items(name, planted_data, content):
    model = create(name, FAST.get(name)).fit(planted_data, content=content)
    users = np.arange(planted_data.n_users)
    ids, scores = model.recommend(users, k=10)
    seen = planted_data.binary
    assert ids.shape == (len(users), 10)
    assert not any(seen[u, i] for u in users for i in ids[u])
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first


@pytest.mark.parametrize("name", sorted(MODELS))
def test_save_load_round_trip_gives_identical_scores(name, planted_data, content, tmp_path):
    model = create(name, FAST.get(name)).fit(planted_data, content=content)
    model.save(tmp_path / name)
    again = load_model(tmp_path / name)
    assert type(again) is type(model) and again.config == model.config
    users = np.arange(10)
    np.testing.assert_array_equal(again.score(users), model.score(users))
    np.testing.assert_array_equal(again.recommend(users, 5)[0], model.recommend(users, 5)[0])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_same_seed_same_model(name, planted_data, content):
    a = create(name, FAST.get(name)).fit(planted_data, content=content).score(np.arange(5))
    b = create(name, FAST.get(name)).fit(planted_data, content=content).score(np.arange(5))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["itemknn", "ease", "bpr", "als"])
def test_collaborative_models_find_the_planted_groups(name):
    x = planted(per_user=12)
    train, test = random_holdout(x, 0.25, seed=0)
    model = create(name, FAST.get(name)).fit(train)
    ids, _ = model.recommend(np.arange(x.n_users), k=5)
    group_of_item = np.arange(x.n_items) // 20
    in_group = group_of_item[ids] == (np.arange(x.n_users) % 4)[:, None]
    assert in_group.mean() > 0.9, f"{name}: only {in_group.mean():.2f} of top-5 in the user's group"


def test_mostpop_ranks_by_distinct_users():
    x = Interactions.from_arrays([0, 1, 2, 0, 1, 0, 0], [2, 2, 2, 1, 1, 0, 0], n_items=4)
    model = create("mostpop").fit(x)
    assert model.score(np.array([3 - 3]))[0].tolist() == [1.0, 2.0, 3.0, 0.0]


def test_ease_matches_the_closed_form():
    x = planted(n_users=30, n_items=12, n_groups=3, per_user=3)
    lam = 5.0
    model = create("ease", {"reg": lam}).fit(x)
    X = x.matrix.toarray().astype(np.float64)
    P = np.linalg.inv(X.T @ X + lam * np.eye(X.shape[1]))
    B = np.eye(X.shape[1]) - P / np.diag(P)
    np.testing.assert_allclose(model.B_, B, atol=1e-5)


def test_itemknn_similarity_is_cosine_with_top_k_neighbours():
    x = planted(n_users=40, n_items=16, n_groups=2, per_user=4)
    model = ItemKNN(neighbors=3).fit(x)
    X = x.matrix.toarray()
    norms = np.linalg.norm(X, axis=0)
    cos = (X.T @ X) / np.outer(norms, norms).clip(1e-12)
    np.fill_diagonal(cos, 0)
    S = model.similarity_.toarray()
    for i in range(x.n_items):
        kept = np.flatnonzero(S[i])
        assert len(kept) <= 3
        np.testing.assert_allclose(S[i, kept], cos[i, kept], rtol=1e-5)
        assert S[i, kept].min() >= np.sort(cos[i])[-3] - 1e-6  # the kept ones are the most similar


def test_itemknn_shrink_damps_rare_co_occurrences():
    x = planted(n_users=40, n_items=16, n_groups=2, per_user=4)
    plain = ItemKNN(neighbors=15).fit(x).similarity_.toarray()
    shrunk = ItemKNN(neighbors=15, shrink=10.0).fit(x).similarity_.toarray()
    B = (x.matrix.toarray() > 0).astype(float)
    co = B.T @ B
    mask = shrunk > 0
    np.testing.assert_allclose(shrunk[mask], (plain * co / (co + 10.0))[mask], rtol=1e-5)


def test_itemknn_neighbours_are_unique_when_weights_cancel_out():
    # users 0 and 1 give item 1 weights +1 and -1, so the sum for the pair (0, 1) is exactly zero after
    # them; user 3 then touches item 1 again: it must stay one candidate (each zero crossing once added a
    # candidate, which could overflow the kernel's unchecked buffer), and appear once among the neighbours
    x = Interactions.from_arrays([0, 0, 1, 1, 2, 2, 3, 3], [0, 1, 0, 1, 0, 2, 0, 1],
                                 weights=[1, 1, 1, -1, 1, 1, 1, 1])
    S = ItemKNN(neighbors=2).fit(x).similarity_
    for i in range(S.shape[0]):
        row = S.indices[S.indptr[i]:S.indptr[i + 1]]
        assert len(row) == len(set(row.tolist()))


def test_als_cg_step_reaches_the_exact_least_squares_solution():
    rng = np.random.default_rng(0)
    X = sp.random(20, 15, density=0.3, random_state=0, format="csr", dtype=np.float32)
    X.data[:] = rng.integers(1, 4, size=X.nnz)
    f, reg, alpha = 4, 0.1, 2.0
    U = np.zeros((20, f), np.float32)
    V = rng.standard_normal((15, f)).astype(np.float32)
    conf = (1 + alpha * X.data).astype(np.float32)
    _kernels.als_cg_half_step(X.indptr, X.indices, conf, U, V, V.T @ V + reg * np.eye(f, dtype=np.float32), 50)
    for u in range(20):
        c = np.ones(15)
        p = np.zeros(15)
        row = X[u]
        c[row.indices] = 1 + alpha * row.data
        p[row.indices] = 1
        A = V.T @ (c[:, None] * V) + reg * np.eye(f)
        exact = np.linalg.solve(A, V.T @ (c * p))
        np.testing.assert_allclose(U[u], exact, rtol=1e-3, atol=1e-4)


def test_biased_mf_recovers_biases_of_a_rating_model():
    rng = np.random.default_rng(0)
    n_users, n_items = 200, 50
    bu, bi = rng.normal(0, 0.5, n_users), rng.normal(0, 0.8, n_items)
    users = np.repeat(np.arange(n_users), 25)
    items = np.concatenate([rng.choice(n_items, 25, replace=False) for _ in range(n_users)])
    ratings = 3.5 + bu[users] + bi[items] + rng.normal(0, 0.1, len(users))
    x = Interactions.from_arrays(users, items, weights=ratings)
    train, test = random_holdout(x, 0.2, seed=0)
    model = create("biasedmf", {"epochs": 40, "factors": 4, "learning_rate": 0.01}).fit(train)
    pred = model.score(Query(users=test.users, items=test.items))
    rmse = np.sqrt(np.mean((pred - test.weights) ** 2))
    assert rmse < 0.35 < np.std(test.weights)  # far better than predicting the mean
    assert model.history_[-1]["train_rmse"] < model.history_[0]["train_rmse"]


def test_bpr_orders_more_training_pairs_correctly_as_it_trains(planted_data):
    model = create("bpr", FAST["bpr"]).fit(planted_data)
    assert model.history_[-1]["correct"] > max(0.9, model.history_[0]["correct"])


def test_recommend_pads_when_fewer_items_than_k():
    x = Interactions.from_arrays([0, 0, 1], [0, 1, 2])
    ids, scores = create("mostpop").fit(x).recommend(np.array([0]), k=3)
    assert ids[0].tolist() == [2, -1, -1] and np.isneginf(scores[0, 1:]).all()


def test_candidates_restrict_the_ranking(planted_data):
    model = create("ease", {"reg": 10.0}).fit(planted_data)
    ids, _ = model.recommend(np.arange(5), k=3, candidates=np.arange(40, 50))
    assert ((ids >= 40) & (ids < 50)).all()


def test_bad_hyper_parameters_are_config_errors():
    with pytest.raises(ConfigError, match="model 'ease', parameter 'reg'"):
        create("ease", {"reg": -1})
    with pytest.raises(ConfigError, match="parameter 'lambda'"):
        create("ease", {"lambda": 3})
    with pytest.raises(ConfigError, match="unknown model 'svdpp'"):
        create("svdpp")


def test_scoring_before_fit_is_a_clear_error():
    with pytest.raises(NotFittedError):
        create("ease").recommend(np.array([0]))
