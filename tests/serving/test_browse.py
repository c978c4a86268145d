"""The web page's server side over HTTP on loopback: the page, its reads, and media from the media root only."""

import os

import pytest

from tests.serving.test_server import serve
from tests.serving.uiworld import ADMIN, READ, WRITE, build

pytestmark = pytest.mark.xdist_group("ui")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = build(tmp_path_factory.mktemp("ui"))
    with serve(w.service, model_dir="main", report_dir=str(w.report)) as client:
        yield w, client


def get(client, path, key=READ, **params):
    return client.get(path, params=params, headers={"X-API-Key": key})


def test_the_page_needs_no_key_and_locks_itself_down(world):
    _, client = world
    r = client.get("/ui")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "<script src=\"/ui/static/app.js\"" in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert client.get("/ui/static/app.js").headers["content-type"].startswith("text/javascript")
    for name in ("index.html", "../routes/ui.py", "%2e%2e%2fapp.js", "nope.js"):
        assert client.get(f"/ui/static/{name}").status_code == 404


def test_every_read_behind_the_page_needs_a_key(world):
    _, client = world
    for path in ("/ui/api/meta", "/ui/api/users", "/ui/api/users/u00/history", "/ui/api/cards?id=space0",
                 "/ui/api/report", "/ui/api/report/plot.png", "/items/space0/media/image"):
        assert client.get(path).status_code == 401, path
        assert get(client, path, key="wrong-key-1").status_code == 401, path


def test_meta_offers_what_the_key_and_model_allow(world):
    _, client = world
    m = get(client, "/ui/api/meta").json()
    assert m["key"] == "read" and m["model"] == "content-ease" and m["model_dir"] == "main"
    assert m["models"] == ["by-scenario", "main"] and m["scenarios"] == []  # content-ease knows no scenario
    assert m["filters"]["topic"][:3] and set(m["filters"]["topic"]) == {"space", "cooking", "music"}
    assert m["like_weight"] > 0 >= m["dislike_weight"] and m["report"] is True
    assert get(client, "/ui/api/meta", key=ADMIN).json()["key"] == "admin"


def test_users_by_prefix_and_a_users_history(world):
    _, client = world
    users = get(client, "/ui/api/users", q="u1", limit=5).json()["users"]
    assert [u["user_id"] for u in users] == ["u10", "u11", "u12", "u13", "u14"] and users[0]["likes"] == 4
    assert get(client, "/ui/api/users", q="zzz").json()["users"] == []
    assert get(client, "/ui/api/users", limit=1000).status_code == 422
    h = get(client, "/ui/api/users/u00/history", k=3).json()
    assert h["likes"] == 4 and len(h["events"]) == 3
    assert all(e["liked"] and e["item"]["attributes"]["topic"] == "space" for e in h["events"])
    times = [e["timestamp"] for e in h["events"]]
    assert times == sorted(times, reverse=True)  # newest first
    assert get(client, "/ui/api/users/nobody/history").status_code == 404


def test_cards_say_which_media_can_be_played(world):
    _, client = world
    ids = [("id", i) for i in ("music0", "space1", "outside", "ghost")]
    cards = {c["item_id"]: c for c in client.get("/ui/api/cards", params=ids, headers={"X-API-Key": READ})
             .json()["cards"]}
    assert set(cards) == {"music0", "space1", "outside"}  # an unknown id is left out
    assert cards["music0"]["image"] and cards["music0"]["audio"]
    assert cards["space1"]["image"] and not cards["space1"]["audio"]
    assert not cards["outside"]["image"]  # its file lies outside the media root
    assert cards["space1"]["text"].startswith("astronauts on the moon")


def test_media_is_served_from_the_media_root_only(world):
    w, client = world
    r = get(client, "/items/space0/media/image")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content[:4] == b"\x89PNG"
    assert r.headers["x-content-type-options"] == "nosniff"
    a = get(client, "/items/music2/media/audio")
    assert a.status_code == 200 and a.headers["content-type"] == "audio/wav" and a.content[:4] == b"RIFF"
    assert get(client, "/items/outside/media/image").status_code == 404
    assert "media root" in get(client, "/items/outside/media/image").json()["detail"]
    assert get(client, "/items/space0/media/audio").status_code == 404  # none
    assert get(client, "/items/ghost/media/image").status_code == 404
    assert get(client, "/items/space0/media/passwd").status_code in (400, 422)
    # a stored path that is a symlink out of the root, or a type a browser would run, is never served
    link = w.media / "posters" / "link.png"
    os.symlink(w.outside / "secret.png", link)
    page = w.media / "posters" / "page.html"
    page.write_text("<script>alert(1)</script>")
    with w.service._store_lock:
        w.service.store._sql("UPDATE items SET image = ? WHERE item_id = 'space4'", [str(link)])
        w.service.store._sql("UPDATE items SET image = ? WHERE item_id = 'space5'", [str(page)])
    assert get(client, "/items/space4/media/image").status_code == 404
    assert get(client, "/items/space5/media/image").status_code == 404


def test_the_report_is_listed_and_only_its_plots_are_served(world):
    _, client = world
    rep = get(client, "/ui/api/report").json()
    assert {r["model"] for r in rep["rows"]} == {"mostpop", "ease", "content-knn", "content-knn − text",
                                                "content-knn − image"} and "plot.png" in rep["plots"]
    worth = {w["modality"]: w for w in rep["modalities"]}
    assert set(worth) == {"text", "image"} and all(w["ci_low"] <= w["diff"] <= w["ci_high"] for w in worth.values())
    assert 0 <= rep["rows"][0]["metrics"]["ndcg@10"] <= 1
    r = get(client, "/ui/api/report/plot.png")
    assert r.status_code == 200 and r.content[:4] == b"\x89PNG"
    for name in ("results.json", "..%2Fstore.duckdb", "report.md", "nope.png"):
        assert get(client, f"/ui/api/report/{name}").status_code == 404, name


def test_a_server_without_a_report_says_so(world):
    w, _ = world
    with serve(w.service) as bare:
        r = get(bare, "/ui/api/report")
        assert r.status_code == 404 and "--report" in r.json()["detail"]
        assert get(bare, "/ui/api/meta").json()["report"] is False


def test_write_key_rights_are_the_apis_own(world):
    _, client = world
    r = client.post("/events", json={"events": [{"user_id": "u00", "item_id": "space0"}]},
                    headers={"X-API-Key": READ})
    assert r.status_code == 403
    r = client.post("/admin/reload", json={"model_dir": "by-scenario"}, headers={"X-API-Key": WRITE})
    assert r.status_code == 403


def test_read_roots_are_served_and_referenced_but_never_written(tmp_path):
    from mosaicrec.serving.media import MediaPolicy, MediaRejected
    from tests.serving.uiworld import poster

    (tmp_path / "dataset").mkdir(), (tmp_path / "other").mkdir()
    poster(tmp_path / "dataset" / "a.png", (1, 2, 3), 0)
    poster(tmp_path / "other" / "b.png", (1, 2, 3), 0)
    policy = MediaPolicy(tmp_path / "media", read_roots=(tmp_path / "dataset",))
    assert policy.servable(str(tmp_path / "dataset" / "a.png"), "image")[1] == "image/png"
    assert policy.resolve(str(tmp_path / "dataset" / "a.png"), "image").endswith("a.png")
    assert policy.servable(str(tmp_path / "other" / "b.png"), "image") is None
    assert policy.servable(str(tmp_path / "dataset"), "image") is None  # a root itself is no file
    with pytest.raises(MediaRejected, match="inside the media root"):
        policy.resolve(str(tmp_path / "other" / "b.png"), "image")
    path, new = policy.save_upload((tmp_path / "other" / "b.png").read_bytes(), "x.png", "image")
    assert new and path.startswith(str(tmp_path / "media" / "uploads"))
