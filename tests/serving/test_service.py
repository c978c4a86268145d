"""The serving core without HTTP: ANN retrieval against exact, and MMR/explanation helpers."""

import time

import numpy as np
import pandas as pd

from mosaicrec.data.content import ItemContent
from mosaicrec.data.store import Store
from mosaicrec.models import create
from mosaicrec.ranking.ann import InnerProductIndex, recall_at_k
from mosaicrec.ranking.rerank import explain, mmr
from mosaicrec.serving.service import Service
from tests.conftest import planted


def ids(result):
    return [r.item_id for r in result.items]


def _rows(item_ids, **attrs):
    return pd.DataFrame([{"item_id": i, "title": i, "texts": {}, "image": None, "audio": None,
                          "attributes": dict(attrs)} for i in item_ids])


def _store(tmp_path, x):
    items = pd.DataFrame({"item_id": x.item_ids, "title": [f"t{i}" for i in x.item_ids], "texts": [{}] * x.n_items,
                          "image": None, "audio": None,
                          "attributes": [{"half": "a" if k < x.n_items // 2 else "b"} for k in range(x.n_items)]})
    events = pd.DataFrame({"user_id": x.user_ids[x.users], "item_id": x.item_ids[x.items],
                           "timestamp": x.timestamps, "event_type": "like", "weight": 1.0, "context": "{}"})
    with Store(tmp_path / "s.duckdb") as st:
        st.ingest(items=items, events=events)
    return tmp_path / "s.duckdb"


def test_ann_service_matches_exact_and_keeps_k_under_filters(tmp_path):
    x = planted(n_users=200, n_items=400, n_groups=4, per_user=15)
    store = _store(tmp_path, x)
    model = create("als", {"factors": 16, "iterations": 10}).fit(x)
    exact, ann = Service(model, store, retrieval="exact"), Service(model, store, retrieval="ann")
    assert ann.retrieval == "ann" and exact.retrieval == "exact"
    same = []
    for u in map(str, range(0, 200, 7)):
        e = [r.item_id for r in exact.recommend(u, 10).items]
        a = [r.item_id for r in ann.recommend(u, 10).items]
        same.append(len(set(e) & set(a)) / 10)
        seen = {str(x.item_ids[i]) for i in x.items[x.users == int(u)]}
        assert not seen & set(a)
        filtered = ann.recommend(u, 10, filters={"half": "b"}).items
        assert len(filtered) == 10 and all(int(r.item_id) >= 200 for r in filtered)
    assert np.mean(same) > 0.9


def test_inner_product_index_recall_and_bias():
    rng = np.random.default_rng(0)
    V, b, Q = rng.standard_normal((5000, 16)), rng.standard_normal(5000), rng.standard_normal((50, 16))
    exact = np.argsort(-(Q @ V.T + b), axis=1)[:, :10]
    ids, _ = InnerProductIndex(V, b).search(Q, 10)
    assert recall_at_k(ids, exact) > 0.9


def test_mmr_lambda_one_is_the_ranking_and_lower_lambda_spreads():
    v = np.array([[1, 0], [0.99, 0.14], [0, 1], [0.98, 0.2]], np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    cands, scores = np.arange(4), np.array([1.0, 0.9, 0.5, 0.8])
    assert mmr(cands, scores, v, 3, 1.0).tolist() == [0, 1, 3]
    assert mmr(cands, scores, v, 2, 0.3).tolist() == [0, 2]


def test_explain_names_the_closest_history_item_and_its_modality():
    text = np.eye(4, dtype=np.float32)
    image = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], np.float32)
    vecs, masks = {"text": text, "image": image}, {"text": np.ones(4, bool), "image": np.array([1, 1, 1, 0], bool)}
    (item, modality), = explain(np.array([1]), np.array([0, 2]), vecs, masks)
    assert item == 0 and modality == "image"
    assert explain(np.array([3]), np.array([], np.int64), vecs, masks)[0][0] is None


def test_content_of_items_added_later_reaches_recommendations(tmp_path):
    x = planted(n_users=60, n_items=40, n_groups=4, per_user=8)
    store = _store(tmp_path, x)
    group = np.arange(40) // 10
    feats = np.eye(4, dtype=np.float32)[group] + 0.01
    content = ItemContent(x.item_ids, {"text": feats}, {"text": np.ones(40, bool)})
    service = Service(create("ease", {"reg": 5.0}).fit(x), store, content)
    # an item the model never saw, placed by content in group 0's region
    service.install_items(_rows(["new"]), ItemContent(np.array(["new"], dtype=object), {"text": feats[:1]},
                                                      {"text": np.ones(1, bool)}))
    assert "new" in ids(service.recommend("0", 5))  # user 0 is in group 0
    other = ids(service.recommend("1", 10))  # user 1 is in group 1: "new" ranks among group 0's items, after theirs
    own = [k for k, i in enumerate(other) if i != "new" and 10 <= int(i) < 20]
    assert own and ("new" not in other or other.index("new") > max(own))


def test_unreadable_media_of_a_new_item_is_refused_and_nothing_is_written(tmp_path):
    import pytest

    from mosaicrec.encoders import create_encoder, encode_items
    from mosaicrec.serving.service import MediaRejected
    from tests.encoders.conftest import picture

    x = planted(n_users=30, n_items=20, n_groups=2, per_user=5)
    store = _store(tmp_path, x)
    for i in range(20):
        picture(tmp_path / f"{i}.png", i % 2 + 1)
    with Store(store) as st:
        items = st.load_dataset().items
    items["image"] = [str(tmp_path / f"{i}.png") for i in items["item_id"]]
    content = encode_items(items, {"image": create_encoder("color-texture")}, progress=False).content
    service = Service(create("ease", {"reg": 5.0}).fit(x), store, content)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    new = pd.DataFrame([{"item_id": "n1", "title": "new", "texts": {}, "image": str(tmp_path / "bad.png"),
                         "audio": None, "attributes": {}}])
    with pytest.raises(MediaRejected, match="'n1': image content rejected"):
        service.add_items(new)
    assert "n1" not in service.snapshot.catalog.index and service.store.counts()["items"] == 20
    picture(tmp_path / "good.png", 1)
    service.add_items(new.assign(image=str(tmp_path / "good.png")))
    snap = service.snapshot
    assert snap.content.modality_masks["image"][snap.catalog.index["n1"]]
    assert [r.item_id for r in service.similar("n1", 3)]
    service.close()


def test_rate_limit_per_key_answers_429(tmp_path):
    from fastapi.testclient import TestClient

    from mosaicrec.serving.app import create_app

    x = planted(n_users=20, n_items=20, n_groups=2, per_user=4)
    service = Service(create("mostpop").fit(x), _store(tmp_path, x))
    app = create_app(service, {"a": "read", "b": "read"}, rate_limit=0.001, burst=2)
    with TestClient(app) as client:
        codes = [client.get("/users/0/recommendations", headers={"X-API-Key": "a"}).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        assert client.get("/users/0/recommendations", headers={"X-API-Key": "b"}).status_code == 200  # per key


def _explain_one_by_one(item, history, vecs, masks):
    """The definition, pair by pair: the reference the vectorised version must match."""
    best, best_sim, best_mod = None, -np.inf, None
    for h in history:
        sims = {m: float(v[item] @ v[h]) for m, v in vecs.items() if masks[m][item] and masks[m][h]}
        if sims and np.mean(list(sims.values())) > best_sim:
            best, best_sim, best_mod = int(h), float(np.mean(list(sims.values()))), max(sims, key=sims.get)
    return best, best_mod


def test_batch_explanations_agree_with_one_by_one():
    rng = np.random.default_rng(0)
    vecs = {m: rng.standard_normal((30, 5)).astype(np.float32) for m in ("text", "image")}
    masks = {"text": np.ones(30, bool), "image": rng.random(30) > 0.3}
    items, hist = np.array([1, 4, 7, 9]), np.array([10, 11, 12, 20, 25])
    assert explain(items, hist, vecs, masks) == [_explain_one_by_one(int(i), hist, vecs, masks) for i in items]
    one = {"image": vecs["image"]}, {"image": masks["image"]}  # the one-modality path agrees too
    assert explain(items, hist, *one) == [_explain_one_by_one(int(i), hist, *one) for i in items]


def _same_top(a, b):
    return [r.item_id for r in a] == [r.item_id for r in b]


def test_ann_answers_narrow_filters_live_users_and_new_items_like_exact(tmp_path):
    """Every path of ANN retrieval gives exact's list: a narrow filter (scored exactly over the passing
    items), a user folded in from live events (their folded vector queries the index), and items added
    since training (scored by content and merged)."""
    x = planted(n_users=200, n_items=400, n_groups=4, per_user=15)
    store = _store(tmp_path, x)
    with Store(store) as st:
        st.ingest(items=pd.DataFrame({"item_id": [str(i) for i in range(400)], "title": "t", "texts": [{}] * 400,
                                      "image": None, "audio": None,
                                      "attributes": [{"half": "a" if i < 200 else "b", "tag": [f"t{i % 40}"]}
                                                     for i in range(400)]}))
    group = np.arange(400) // 100
    feats = np.eye(4, dtype=np.float32)[group] + 0.05 * np.random.default_rng(0).standard_normal((400, 4))
    content = ItemContent(x.item_ids, {"text": feats.astype(np.float32)}, {"text": np.ones(400, bool)})
    model = create("als", {"factors": 16, "iterations": 10}).fit(x)
    exact = Service(model, store, content, retrieval="exact")
    ann = Service(model, store, content, retrieval="ann")
    assert ann.snapshot.content.index is not None and exact.snapshot.content.index is None
    # a tag filter passes 10 of 400 items: below a fifth of the catalog, so scored exactly
    for u in map(str, range(0, 200, 17)):
        a, e = ann.recommend(u, 5, filters={"tag": "t3"}).items, exact.recommend(u, 5, filters={"tag": "t3"}).items
        assert _same_top(a, e) and all(int(r.item_id) % 40 == 3 for r in a)
    # live events: user 5 (group 1) starts liking group 3's items
    ev = pd.DataFrame({"user_id": "5", "item_id": [str(i) for i in range(300, 312)], "timestamp": 5_000,
                       "event_type": ["like"] * 12, "weight": 1.0, "context": "{}"})
    ev["timestamp"] = np.arange(12) + 5_000
    assert exact.add_events(ev) == 12
    assert ann.add_events(ev) == 0  # both serve one store: the second write only updates
    a, e = ann.recommend("5", 10).items, exact.recommend("5", 10).items
    assert len(set(r.item_id for r in a) & set(r.item_id for r in e)) >= 9
    assert not {str(i) for i in range(300, 312)} & {r.item_id for r in a}  # the new events count as seen
    # an item the model never saw, with group 0 content, reaches a group-0 user on both paths
    new = ItemContent(np.array(["n1"], dtype=object), {"text": feats[:1].astype(np.float32)}, {"text": np.ones(1, bool)})
    exact.install_items(_rows(["n1"], half="a"), new)
    ann.install_items(_rows(["n1"], half="a"), new)
    a, e = ann.recommend("0", 100).items, exact.recommend("0", 100).items
    assert "n1" in [r.item_id for r in a] and "n1" in [r.item_id for r in e]
    assert "n1" not in ids(ann.recommend("0", 100, filters={"half": "b"}))
    assert abs(next(r.score for r in a if r.item_id == "n1") - next(r.score for r in e if r.item_id == "n1")) < 1e-4
    # similar items from the content index agree with exact cosine
    for item in ("0", "150", "399"):
        assert [r.item_id for r in ann.similar(item, 5)] == [r.item_id for r in exact.similar(item, 5)]
    exact.close(), ann.close()


def test_group_commit_writes_concurrent_calls_together_and_isolates_a_bad_frame():
    import threading

    from mosaicrec.serving.writes import GroupCommit

    writes, gate = [], threading.Event()

    def write(frame):
        gate.wait(5)  # hold the first write so that the others queue behind it
        if (frame["bad"]).any() and len(frame) > 1:
            raise ValueError("the group holds a bad row")
        if (frame["bad"]).any():
            raise ValueError("bad row")
        writes.append(len(frame))
        return np.ones(len(frame), bool)

    group = GroupCommit(write)
    results: dict[int, object] = {}

    def call(i, n, bad=False):
        try:
            results[i] = group.submit(pd.DataFrame({"bad": [bad] * n}))
        except ValueError as e:
            results[i] = e

    first = threading.Thread(target=call, args=(0, 1))
    first.start()
    time.sleep(0.2)  # the first call is writing (held at the gate)
    rest = [threading.Thread(target=call, args=(i, i + 1, i == 3)) for i in range(1, 6)]
    for t in rest:
        t.start()
    time.sleep(0.3)
    gate.set()
    for t in [first, *rest]:
        t.join(10)
    assert results[0] == 1 and [results[i] for i in (1, 2, 4, 5)] == [2, 3, 5, 6]
    assert isinstance(results[3], ValueError)
    # the four good queued calls went in as one group only if no bad frame was among them: here it was,
    # so after the failed group each frame was written alone (one write each), never lost
    assert sorted(writes) == [1, 2, 3, 5, 6]


def test_group_commit_makes_one_write_of_calls_that_queue_together():
    import threading

    from mosaicrec.serving.writes import GroupCommit

    writes, gate = [], threading.Event()

    def write(frame):
        gate.wait(5)
        writes.append(len(frame))
        return np.arange(len(frame)) % 2 == 0  # every other row "new"

    group = GroupCommit(write)
    got: dict[int, int] = {}
    threads = [threading.Thread(target=lambda i=i: got.__setitem__(i, group.submit(pd.DataFrame({"r": range(4)}))))
               for i in range(5)]
    threads[0].start()
    time.sleep(0.2)
    for t in threads[1:]:
        t.start()
    time.sleep(0.3)
    gate.set()
    for t in threads:
        t.join(10)
    assert writes == [4, 16]  # the first alone, the four that queued behind it in one write
    assert got == {i: 2 for i in range(5)}  # each call is told its own rows' count


def test_content_index_follows_added_and_updated_items(tmp_path):
    """Under ANN, similar items come from an HNSW index over the content; an item added later joins it,
    and an item whose content changes is ranked by its new vector, not the one indexed."""
    x = planted(n_users=60, n_items=200, n_groups=4, per_user=8)
    store = _store(tmp_path, x)
    group = np.arange(200) // 50
    feats = (np.eye(4)[group] + 0.05 * np.random.default_rng(0).standard_normal((200, 4))).astype(np.float32)
    service = Service(create("als", {"factors": 8, "iterations": 5}).fit(x), store,
                      ItemContent(x.item_ids, {"text": feats}, {"text": np.ones(200, bool)}), retrieval="ann")
    assert all(int(r.item_id) < 50 for r in service.similar("0", 5))
    moved = np.array([[0, 0, 0, 1], [1, 0, 0, 0]], np.float32)  # "10" moves to group 3; "new" joins group 0
    service.install_items(_rows(["10", "new"]), ItemContent(np.array(["10", "new"], dtype=object),
                                                            {"text": moved}, {"text": np.ones(2, bool)}))
    cv = service.snapshot.content
    assert cv.n_indexed == 200 and len(cv.vectors) == 201 and cv.stale == {10}
    near_199, near_0 = [r.item_id for r in service.similar("199", 45)], [r.item_id for r in service.similar("0", 45)]
    assert "10" in near_199 and "new" not in near_199  # each group has 50 items: 45 neighbours stay inside it
    assert "new" in near_0 and "10" not in near_0
    service.close()


TEXTS = {
    "space": ["rocket launch to orbit", "astronauts on the moon", "a probe to mars", "the space station",
              "a comet passes the sun", "telescopes find a planet", "a satellite circles the earth",
              "the galaxy and its stars", "a spacewalk outside the capsule", "landing on an asteroid"],
    "cooking": ["fresh pasta with tomato sauce", "baking sourdough bread", "a recipe for curry",
                "grilled vegetables and herbs", "chocolate cake dessert", "soup with garlic and onions",
                "roasting a chicken in the oven", "a salad with olive oil", "frying eggs in butter",
                "slow cooked beef stew"],
    "football": ["the cup final goal", "a striker scores twice", "the goalkeeper saves a penalty",
                 "a football club signs a player", "the league title race", "fans in the stadium",
                 "the referee shows a red card", "a corner kick header", "the coach picks the team",
                 "extra time and penalties"],
}


def test_text_search_reaches_items_known_only_by_their_image(tmp_path):
    """No joint text–image encoder exists offline, so search learns a text→image map from the catalog's
    own pairs (real MiniLM text, generated topic-shaped image vectors): a text query then finds items
    that have an image but no text."""
    from mosaicrec.encoders import create_encoder

    topics = list(TEXTS)
    rng = np.random.default_rng(0)
    ids, titles, topic_of = [], [], []
    for t in topics:
        for j, text in enumerate(TEXTS[t]):
            ids.append(f"{t}{j}"), titles.append(text), topic_of.append(t)
        for j in range(3):  # image-only items
            ids.append(f"{t}-img{j}"), titles.append(""), topic_of.append(t)
    n = len(ids)
    has_text = np.array([bool(t) for t in titles])
    enc = create_encoder("minilm")
    text = np.zeros((n, 384), np.float32)
    text[has_text] = enc.encode([t for t in titles if t])
    image = np.eye(8, dtype=np.float32)[[topics.index(t) for t in topic_of]] + 0.1 * rng.standard_normal((n, 8))
    content = ItemContent(np.array(ids, dtype=object), {"text": text, "image": image.astype(np.float32)},
                          {"text": has_text, "image": np.ones(n, bool)}, {"text": "minilm", "image": "generated"})
    x = planted(n_users=20, n_items=n, n_groups=3, per_user=5)
    x = type(x)(x.user_ids, np.array(ids, dtype=object), x.users, x.items, x.weights, x.timestamps)
    service = Service(create("mostpop").fit(x), _store(tmp_path, x), content)
    service.content.encoders["text"] = enc
    found = service.search("a rocket flies into space", k=12)
    image_only = [r.item_id for r in found if "-img" in r.item_id]
    assert sorted(image_only) == ["space-img0", "space-img1", "space-img2"]
    assert [r.item_id for r in found][0].startswith("space")
    assert set(service.content._query_maps(service.snapshot.content)) == {"image"}
    service.close()


def test_scenario_is_served_by_context_models_of_any_kind(tmp_path):
    """scenario-pop has no factors: the service scores it in the request's scenario directly; an unknown
    scenario is the shared ranking, and a context-free model refuses a scenario."""
    import json

    import pytest

    from mosaicrec.errors import MosaicError
    from tests.models.test_context import half_of, two_surfaces

    x = two_surfaces()
    items = pd.DataFrame({"item_id": x.item_ids, "title": x.item_ids, "texts": [{}] * x.n_items, "image": None,
                          "audio": None, "attributes": [{}] * x.n_items})
    events = pd.DataFrame({"user_id": x.user_ids[x.users], "item_id": x.item_ids[x.items], "timestamp": 0,
                           "event_type": "view", "weight": 1.0,
                           "context": [json.dumps({"scenario": c}) for c in x.context["scenario"]]})
    with Store(tmp_path / "s.duckdb") as st:
        st.ingest(items=items, events=events)
        data = st.load_dataset()
    service = Service(create("scenario-pop", {}).fit(data.interactions), tmp_path / "s.duckdb")
    for scenario, long in (("long", True), ("shorts", False)):
        got = np.array([int(r.item_id) for r in service.recommend("3", 10, scenario=scenario).items])
        assert (half_of(got) == long).all(), (scenario, got)
    assert ids(service.recommend("3", 10, scenario="elsewhere")) == ids(service.recommend("3", 10))
    plain = Service(create("mostpop").fit(data.interactions), tmp_path / "s.duckdb")
    with pytest.raises(MosaicError, match="scenario-bpr"):
        plain.recommend("3", 10, scenario="long")
    service.close(), plain.close()


def test_model_reasons_cite_the_like_whose_removal_lowers_the_score(tmp_path):
    import pytest
    import scipy.sparse as sp

    from mosaicrec.errors import MosaicError
    from mosaicrec.models.query import Query

    x = planted(n_users=60, n_items=40, n_groups=4, per_user=8)
    store = _store(tmp_path, x)
    feats = np.random.default_rng(0).standard_normal((40, 5)).astype(np.float32)
    content = ItemContent(x.item_ids, {"text": feats}, {"text": np.ones(40, bool)})
    model = create("ease", {"reg": 5.0}).fit(x)
    service = Service(model, store, content)
    res = service.recommend("2", 5, reasons="model")
    likes = [str(x.item_ids[i]) for i in x.items[x.users == 2]]
    index = {str(i): n for n, i in enumerate(x.item_ids)}
    hist = np.array([index[i] for i in likes])

    def score(items_, item):
        row = sp.csr_matrix((np.ones(len(items_)), (np.zeros(len(items_)), items_)), shape=(1, 40))
        return model.score(Query(history=row, exclude_seen=False))[0, index[item]]

    cited = [r for r in res.items if r.explanation and r.explanation.startswith("because you liked ")]
    assert len(cited) >= 2 and all(r.modality == "text" for r in cited)  # the 2 unseen items of its block
    for r in cited:
        assert r.because in likes
        assert score(hist[hist != index[r.because]], r.item_id) < score(hist, r.item_id)
    for r in res.items:  # the content reason only where no like carries the item's score
        if r not in cited:
            assert all(score(hist[hist != h], r.item_id) >= score(hist, r.item_id) - 1e-6 for h in hist)
    # the content reason for the same list is another rule: the closest like in content
    assert all(r.explanation.startswith("similar to ") for r in service.recommend("2", 5).items if r.because)
    with pytest.raises(MosaicError, match="reasons must be"):
        service.recommend("2", 5, reasons="vibes")
    service.close()


def test_kg_paths_join_each_recommendation_to_the_like_it_cites_over_http(tmp_path):
    """Films of a block share a director; every cited like comes with the KG path, served as JSON."""
    from mosaicrec.data.kg import build_item_kg
    from tests.serving.test_server import get, serve

    x = planted(n_users=60, n_items=40, n_groups=4, per_user=8)
    items = pd.DataFrame({"item_id": x.item_ids, "title": [f"t{i}" for i in x.item_ids], "image": None,
                          "audio": None, "texts": [{"director": f"dir{k // 10}"} for k in range(40)],
                          "attributes": [{"genres": ["Drama" if k % 2 else "Comedy"]} for k in range(40)]})
    events = pd.DataFrame({"user_id": x.user_ids[x.users], "item_id": x.item_ids[x.items],
                           "timestamp": x.timestamps, "event_type": "like", "weight": 1.0, "context": "{}"})
    with Store(tmp_path / "s.duckdb") as st:
        st.ingest(items=items, events=events)
        data = st.load_dataset()
    kg = build_item_kg(data.items)
    model = create("ease", {"reg": 5.0}).fit(x)
    service = Service(model, tmp_path / "s.duckdb", kg=kg)
    with serve(service) as client:
        r = get(client, "/users/2/recommendations", k=5, reasons="model")
        assert r.status_code == 200
        got = r.json()["items"]
    cited = [i for i in got if i["because"]]
    assert len(cited) >= 2
    for i in cited:  # user 2 likes block 2: the item and the like share dir2, more specific than a genre
        assert int(i["item_id"]) // 10 == int(i["because"]) // 10 == 2
        assert i["kg_path"] == f"you liked t{i['because']}; both are directed by dir2"
    # without a graph, no path; an item added after the start has none either (not in the graph)
    plain = Service(model, tmp_path / "s.duckdb")
    assert all(r.kg_path is None for r in plain.recommend("2", 5, reasons="model").items)
    assert service.kg.path("new-item", cited[0]["because"], "t") is None
    service.close(), plain.close()
