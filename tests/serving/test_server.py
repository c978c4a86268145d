"""End to end: the real server on 127.0.0.1 over a real DuckDB store and real (MiniLM) item embeddings."""

import collections
import json
import socket
import threading
import time
from contextlib import contextmanager

import httpx
import numpy as np
import pandas as pd
import pytest
import uvicorn

from mosaicrec.data.store import Store
from mosaicrec.encoders import create_encoder, encode_items
from mosaicrec.models import create
from mosaicrec.serving.app import create_app
from mosaicrec.serving.service import Service

TOPICS = {
    "space": ["rocket launch to orbit", "astronauts on the moon", "a probe to mars", "the space station",
              "a comet passes the sun", "telescopes find a planet"],
    "cooking": ["fresh pasta with tomato sauce", "baking sourdough bread", "a recipe for curry",
                "grilled vegetables and herbs", "chocolate cake dessert", "soup with garlic and onions"],
    "football": ["the cup final goal", "a striker scores twice", "the goalkeeper saves a penalty",
                 "a football club signs a player", "the league title race", "fans in the stadium"],
}
WRITE, READ, ADMIN = "w-key-123", "r-key-123", "a-key-123"
# one server, tests in file order on one worker: later tests see earlier writes, as a real service would
pytestmark = pytest.mark.xdist_group("server")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    rows = [{"item_id": f"{t}{j}", "title": text, "texts": {}, "image": None, "audio": None,
             "attributes": {"topic": t}} for t, texts in TOPICS.items() for j, text in enumerate(texts)]
    items = pd.DataFrame(rows)
    rng = np.random.default_rng(0)
    events = []
    for u in range(30):
        topic = list(TOPICS)[u % 3]
        for j in rng.choice(6, 4, replace=False):
            events.append({"user_id": f"u{u}", "item_id": f"{topic}{j}", "timestamp": 1000 + len(events),
                           "event_type": "like", "weight": 1.0, "context": "{}"})
    store = tmp / "store.duckdb"
    with Store(store) as st:
        st.ingest(items=items, events=pd.DataFrame(events))
        data = st.load_dataset()
    content = encode_items(data.items, {"text": create_encoder("minilm")}, progress=False).content
    # α = 3: on 18 items the default α = 30 lets content outweigh the one like this file's lists start from
    model = create("content-ease", {"reg": 10.0, "content_weight": 3.0}).fit(data.interactions, content=content)
    service = Service(model, store, content, model_root=tmp / "models")
    with serve(service) as client:
        yield client, store


@contextmanager
def serve(service, **options):
    """The real app under uvicorn on a free loopback port; yields an HTTP client for it."""
    app = create_app(service, {WRITE: "write", READ: "read", ADMIN: "admin"}, **{"max_body_bytes": 50_000, **options})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(100):
        if srv.started:
            break
        time.sleep(0.05)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        srv.should_exit = True
        thread.join(5)


def get(client, path, key=READ, **params):
    return client.get(path, params=params, headers={"X-API-Key": key})


def post(client, path, body, key=WRITE):
    return client.post(path, json=body, headers={"X-API-Key": key})


def topics(resp):
    return [i["attributes"]["topic"] for i in resp.json()["items"]]


def test_recommendations_follow_taste_with_explanations(server):
    client, _ = server
    r = get(client, "/users/u0/recommendations", k=2)  # u0 likes space
    assert r.status_code == 200 and topics(r) == ["space", "space"]
    first = r.json()["items"][0]
    assert first["because"].startswith("space") and first["modality"] == "text"
    assert first["explanation"].startswith("similar to ")
    # reasons by the model: a like of u0 (a space item) that the model's own score rests on
    by_model = get(client, "/users/u0/recommendations", k=2, reasons="model").json()["items"]
    assert [i["item_id"] for i in by_model] == [i["item_id"] for i in r.json()["items"]]
    assert all(i["because"].startswith("space") and i["explanation"].startswith("because you liked ")
               for i in by_model)
    assert get(client, "/users/u0/recommendations", reasons="vibes").status_code in (400, 422)


def test_keys_are_required_and_read_keys_cannot_write(server):
    client, _ = server
    assert client.get("/health").status_code == 200
    assert client.get("/users/u0/recommendations").status_code == 401
    assert get(client, "/users/u0/recommendations", key="nope").status_code == 401
    r = post(client, "/events", {"events": [{"user_id": "u0", "item_id": "space0"}]}, key=READ)
    assert r.status_code == 403 and "read-only" in r.json()["detail"]


def test_a_new_item_is_recommendable_at_once(server):
    client, _ = server
    r = post(client, "/items", {"items": [{"item_id": "space-new", "title": "a rocket lands on the moon",
                                           "attributes": {"topic": "space"}}]})
    assert r.status_code == 201
    sims = get(client, "/items/space-new/similar", k=3)
    assert topics(sims) == ["space"] * 3
    ids = [i["item_id"] for i in get(client, "/users/u3/recommendations", k=3).json()["items"]]
    assert "space-new" in ids  # u3 likes space; the model never trained on this item
    football_fan = [i["item_id"] for i in get(client, "/users/u2/recommendations", k=3).json()["items"]]
    assert "space-new" not in football_fan


def test_an_existing_id_is_not_silently_replaced(server):
    client, _ = server
    r = post(client, "/items", {"items": [{"item_id": "space0", "title": "oops"}]})
    assert r.status_code == 409 and "PUT" in r.json()["detail"]
    assert get(client, "/items/space0").json()["title"] == "rocket launch to orbit"  # nothing wiped
    headers = {"X-API-Key": WRITE}
    r = client.patch("/items/space0", json={"attributes": {"era": "1960s"}}, headers=headers)
    assert r.status_code == 200
    stored = get(client, "/items/space0").json()
    assert stored["title"] == "rocket launch to orbit" and stored["attributes"] == {"topic": "space", "era": "1960s"}
    r = client.put("/items/space-put", json={"title": "a moon landing", "attributes": {"topic": "space"}},
                   headers=headers)
    assert r.status_code == 200 and get(client, "/items/space-put").json()["title"] == "a moon landing"
    assert client.patch("/items/nope", json={"title": "x"}, headers=headers).status_code == 404


def test_events_change_a_new_users_recommendations(server):
    client, store = server
    cold = get(client, "/users/newbie/recommendations", k=3).json()  # a brand-new user: the popular items
    assert cold["cold_start"] is True and cold["policy"] == "popular" and len(cold["items"]) == 3
    r = post(client, "/events", {"events": [{"user_id": "newbie", "item_id": "cooking0"},
                                            {"user_id": "newbie", "item_id": "cooking1", "context": {"device": "tv"}}]})
    assert r.status_code == 201 and r.json()["added"] == 2
    with Store(store) as st:  # durable before the call returned
        assert st.counts()["events"] >= 122
    assert set(topics(get(client, "/users/newbie/recommendations", k=3))) == {"cooking"}
    # a known user who starts liking football moves towards it without retraining
    before = topics(get(client, "/users/u1/recommendations", k=4))  # u1 likes cooking
    post(client, "/events", {"events": [{"user_id": "u1", "item_id": f"football{j}"} for j in range(4)]})
    after = topics(get(client, "/users/u1/recommendations", k=4))
    assert after.count("football") > before.count("football")


def test_filters_apply_before_top_k_and_diversity_spreads_the_list(server):
    client, _ = server
    r = get(client, "/users/u0/recommendations", k=5, filter="topic:cooking")
    assert topics(r) == ["cooking"] * 5  # u0 likes space, yet five cooking items come back
    # a user of their own (other tests change u0's neighbourhood), who has liked one space item
    post(client, "/events", {"events": [{"user_id": "mmr-user", "item_id": "space0"}]})
    plain = topics(get(client, "/users/mmr-user/recommendations", k=5))
    diverse = topics(get(client, "/users/mmr-user/recommendations", k=5, diversity=0.9))
    assert plain.count("space") >= 4
    assert len(diverse) == 5 and diverse.count("space") < plain.count("space")


def test_search_finds_items_by_meaning(server):
    client, _ = server
    r = post(client, "/search", {"query": "italian food", "k": 3}, key=READ)
    assert r.status_code == 200 and topics(r) == ["cooking"] * 3


def test_bad_input_is_a_clear_4xx_and_writes_nothing(server):
    client, store = server
    with Store(store) as st:
        before = st.counts()["events"]
    bad = [
        (post(client, "/events", {"events": [{"user_id": "u0", "item_id": "no-such-item"}]}), 404, "no-such-item"),
        (client.post("/events", content=b"{not json", headers={"X-API-Key": WRITE,
                                                               "Content-Type": "application/json"}), 422, ""),
        (post(client, "/events", {"events": [{"user_id": "u0", "item_id": "space0", "weight": "heavy"}]}), 422,
         "weight"),
        (post(client, "/events", {"events": []}), 422, "events"),
        (post(client, "/events", {"events": [{"user_id": "u0", "item_id": "x" * 100}] * 600}), 413, "exceeds"),
        (get(client, "/users/u0/recommendations", k=0), 422, "k"),
        (get(client, "/items/nope/similar"), 404, "nope"),
        (get(client, "/items/space0/similar", modality="audio"), 400, "audio"),
        (get(client, "/users/u0/recommendations", filter="topic"), 400, "attribute:value"),
        (get(client, "/users/u0/recommendations", scenario="feed"), 400, "same in every scenario"),
    ]
    for resp, status, text in bad:
        assert resp.status_code == status, resp.text
        assert text in resp.json()["detail"]
    with Store(store) as st:
        assert st.counts()["events"] == before


def test_erasing_a_user_removes_them_everywhere(server):
    client, store = server
    r = client.delete("/users/u5", headers={"X-API-Key": WRITE})
    assert r.status_code == 200 and r.json()["events_erased"] == 4
    after = get(client, "/users/u5/recommendations").json()
    assert after["cold_start"] is True  # nothing of theirs is left to go on
    with Store(store) as st:
        assert st._sql("SELECT count(*) FROM events WHERE user_id = 'u5'")[0][0] == 0


def test_reload_swaps_the_model_with_no_failed_request(server):
    client, store = server
    with Store(store) as st:
        data = st.load_dataset()
    create("ease", {"reg": 5.0}).fit(data.interactions).save(store.parent / "models" / "ease")
    statuses, stop = [], threading.Event()

    def hammer():
        while not stop.is_set():
            statuses.append(get(client, "/users/u3/recommendations", k=3).status_code)

    def answered(n: int) -> None:  # counts, not sleeps: a loaded CI box may be slow
        deadline = time.monotonic() + 30
        while len(statuses) < n and time.monotonic() < deadline:
            time.sleep(0.01)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    answered(10)
    r = post(client, "/admin/reload", {"model_dir": "ease"}, key=ADMIN)
    answered(len(statuses) + 10)
    stop.set()
    for t in threads:
        t.join()
    assert r.status_code == 200 and r.json()["model"] == "ease"
    assert len(statuses) >= 20 and set(statuses) == {200}, collections.Counter(statuses)
    status = get(client, "/status").json()
    assert status["model"] == "ease" and status["reloads"] >= 1
    assert post(client, "/admin/reload", {"model_dir": "missing"}, key=ADMIN).status_code == 422
    assert post(client, "/admin/reload", {"model_dir": "ease"}, key=WRITE).status_code == 403


def test_metrics_count_requests_by_route_template(server):
    client, _ = server
    get(client, "/users/u4/recommendations", k=2)
    assert client.get("/metrics").status_code == 401
    text = get(client, "/metrics").text
    assert 'mosaicrec_requests_total{method="GET",route="/users/{user_id}/recommendations",status="200"}' in text
    assert "mosaicrec_request_seconds_bucket" in text
    assert client.get("/ready").json()["ready"] is True


def test_scenario_reaches_a_context_model_and_live_users(tmp_path):
    """A multi-scenario model behind the real server: the scenario picks the surface's half of each
    user's taste block, for trained users and for a user known only by events posted to the server."""
    from tests.models.test_context import SCENARIO_BPR, half_of, two_surfaces

    x = two_surfaces()
    items = pd.DataFrame({"item_id": x.item_ids, "title": [f"v{i}" for i in x.item_ids], "texts": [{}] * x.n_items,
                          "image": None, "audio": None, "attributes": [{}] * x.n_items})
    events = pd.DataFrame({"user_id": x.user_ids[x.users], "item_id": x.item_ids[x.items], "timestamp": 0,
                           "event_type": "view", "weight": 1.0,
                           "context": [json.dumps({"scenario": c}) for c in x.context["scenario"]]})
    store = tmp_path / "s.duckdb"
    with Store(store) as st:
        st.ingest(items=items, events=events)
        data = st.load_dataset()
    model = create("scenario-bpr", SCENARIO_BPR).fit(data.interactions)
    with serve(Service(model, store, retrieval="ann")) as client:
        long = get(client, "/users/4/recommendations", k=5, scenario="long", include_seen=True).json()
        short = get(client, "/users/4/recommendations", k=5, scenario="shorts", include_seen=True).json()
        assert long["scenario_known"] and half_of(np.array([int(i["item_id"]) for i in long["items"]])).all()
        assert not half_of(np.array([int(i["item_id"]) for i in short["items"]])).any()
        new = get(client, "/users/4/recommendations", k=5, scenario="a-new-tab", include_seen=True).json()
        assert new["cold_start"] is False
        assert new["scenario_known"] is False and len(new["items"]) == 5
        # a new user likes items 0-3 (group 0's block): in "long" they get that block's long half
        resp = post(client, "/events", {"events": [{"user_id": "fresh", "item_id": str(i), "event_type": "view",
                                                    "context": {"scenario": "shorts"}} for i in range(4)]})
        assert resp.status_code == 201, resp.text
        got = get(client, "/users/fresh/recommendations", k=5, scenario="long").json()["items"]
        ids = np.array([int(i["item_id"]) for i in got])
        assert (ids // 20 == 0).mean() >= 0.8 and half_of(ids).mean() >= 0.8, ids
