"""Replicated serving on a real local Ray cluster, behind Ray Serve's proxy and behind none (one port
shared with SO_REUSEPORT): two replicas over one store give identical lists, and a like, an erasure, a new
item and a reload made through one reach the other."""

import socket
import time

import httpx
import pytest

import pandas as pd

from mosaicrec.app.server import ServeOptions
from mosaicrec.data.store import Store
from mosaicrec.encoders import create_encoder, encode_items
from mosaicrec.models import create
from mosaicrec.models.training import TrainingInfo
from tests.conftest import planted
from tests.encoders.conftest import picture

pytest.importorskip("ray.serve")
pytestmark = pytest.mark.xdist_group("ray")
READ, WRITE, ADMIN = "r-key-123", "w-key-123", "a-key-123"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", params=["serve", "reuseport"])
def replicated(ray_cluster, tmp_path_factory, request):
    from ray import serve

    from mosaicrec.app.replicas import start_replicas

    tmp = tmp_path_factory.mktemp("replicas")
    x = planted(n_users=60, n_items=40, per_user=6)
    (tmp / "media").mkdir()
    items = pd.DataFrame({"item_id": x.item_ids, "title": [f"t{i}" for i in x.item_ids], "texts": [{}] * x.n_items,
                          "image": [picture(tmp / "media" / f"p{k}.png", k % 4 + 1) for k in range(x.n_items)],
                          "audio": None, "attributes": [{"half": "a" if k < 20 else "b"} for k in range(x.n_items)]})
    events = pd.DataFrame({"user_id": x.user_ids[x.users], "item_id": x.item_ids[x.items],
                           "timestamp": x.timestamps, "event_type": "like", "weight": 1.0, "context": "{}"})
    store = tmp / "s.duckdb"
    with Store(store) as st:
        st.ingest(items=items, events=events)
    encode_items(items, {"image": create_encoder("color-texture")}, progress=False).content.save(tmp / "content.npz")
    models = tmp / "models"
    info = TrainingInfo(threshold=None, store=str(store))
    create("ease", {"reg": 5.0}).fit(x).save(models / "ease")
    info.save(models / "ease")
    create("mostpop").fit(x).save(models / "pop")
    info.save(models / "pop")
    opts = ServeOptions(models / "ease", store, api_keys=[f"{READ}:read", f"{WRITE}:write", f"{ADMIN}:admin"],
                        content_file=tmp / "content.npz", media_root=tmp / "media", model_root=models)
    handle = start_replicas(opts, 2, port=_port(), ingress=request.param)
    # a connection per request: with reuseport the kernel spreads connections, not requests
    with httpx.Client(base_url=handle.url, timeout=30, headers={"Connection": "close"}) as client:
        _both(client, "/status")  # both replicas answer
        client.handle = handle
        yield client
    handle.stop()
    if request.param == "serve":
        serve.shutdown()


def _get(client, path, key=READ, **params):
    return client.get(path, params=params, headers={"X-API-Key": key})


def _both(client, path, tries: int = 400, **params) -> dict[str, dict]:
    """The answer of each replica to one GET (the proxy picks a replica per request)."""
    seen: dict[str, dict] = {}
    for _ in range(tries):
        r = _get(client, path, **params)
        assert r.status_code == 200, r.text
        seen.setdefault(r.headers["x-served-by"], r.json())
        if len(seen) == 2:
            return seen
    raise AssertionError(f"one replica answered {tries} requests: {list(seen)}")


def _items(answer: dict) -> list[str]:
    return [i["item_id"] for i in answer["items"]]


def _until(check, seconds: float = 20.0):
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


def test_two_replicas_give_identical_lists(replicated):
    answers = _both(replicated, "/users/3/recommendations", k=5)
    first, second = answers.values()
    assert _items(first) == _items(second) and len(_items(first)) == 5
    assert [i["score"] for i in first["items"]] == [i["score"] for i in second["items"]]


def test_a_like_posted_to_one_replica_changes_the_list_the_other_serves(replicated):
    before = _items(next(iter(_both(replicated, "/users/newcomer/recommendations", k=5).values())))
    like = {"events": [{"user_id": "newcomer", "item_id": "0", "weight": 1.0},
                       {"user_id": "newcomer", "item_id": "1", "weight": 1.0}]}
    r = replicated.post("/events", json=like, headers={"X-API-Key": WRITE, "Connection": "close"})
    assert r.status_code == 201, r.text
    writer = r.headers["x-served-by"]

    def everywhere():
        answers = _both(replicated, "/users/newcomer/recommendations", k=5)
        lists = {name: _items(a) for name, a in answers.items()}
        folded = all(not a["cold_start"] for a in answers.values())
        return lists if folded and len({tuple(v) for v in lists.values()}) == 1 else None

    lists = _until(everywhere)
    assert lists, "the like did not reach both replicas"
    other = next(name for name in lists if name != writer)
    assert lists[other] != before and "0" not in lists[other] and "1" not in lists[other]


def test_an_erasure_and_a_new_item_reach_every_replica(replicated):
    r = replicated.delete("/users/5", headers={"X-API-Key": WRITE, "Connection": "close"})
    assert r.status_code == 200, r.text
    erased = _until(lambda: all(a["cold_start"] for a in _both(replicated, "/users/5/recommendations").values()))
    assert erased
    vec = {"items": [{"item_id": "brand-new", "title": "a new item", "image": "p3.png", "attributes": {"half": "a"}}]}
    assert replicated.post("/items", json=vec, headers={"X-API-Key": WRITE}).status_code == 201
    counts = _until(lambda: {a["items"] for a in _both(replicated, "/status").values()} == {41})
    assert counts
    similar = _both(replicated, "/items/brand-new/similar", k=3)  # placed by content on both
    assert len({tuple(_items(a)) for a in similar.values()}) == 1


def test_a_reload_reaches_both_replicas_and_a_bad_one_neither(replicated):
    bad = replicated.post("/admin/reload", json={"model_dir": "../elsewhere"}, headers={"X-API-Key": ADMIN})
    assert bad.status_code == 422
    r = replicated.post("/admin/reload", json={"model_dir": "pop"}, headers={"X-API-Key": ADMIN})
    assert r.status_code == 200, r.text
    status = _both(replicated, "/status").values()
    assert {a["model"] for a in status} == {"mostpop"}  # both swapped before the reload answered
    from mosaicrec.app.replicas import Replica

    handle = replicated.handle
    late = Replica(handle.spec, [handle.shared], handle.writer)  # e.g. a replica Ray Serve restarted
    assert late.service.model.name == "mostpop"
    assert {late.service.health()["items"]} == {a["items"] for a in status}  # the store's catalog, new items too
    late.service.close()
