"""The service probed as an attacker would, round two (issue 32): decoder messages, uploads that are not
what they claim, wrong keys, costly lists, loose numbers and fields, and the state that grew or raced.

Each test here failed on the service as it was before the issue."""

import io
import threading
import time
import zipfile

import numpy as np
import pandas as pd
import pytest

from mosaicrec.data.store import Store
from mosaicrec.encoders import create_encoder, encode_items
from mosaicrec.models import create
from mosaicrec.ranking import selection
from mosaicrec.ranking.pipeline import Request
from mosaicrec.serving.limits import HEAVY_COST, Busy, HeavyLane
from mosaicrec.serving.media import MediaPolicy
from mosaicrec.serving.service import Service
from tests.encoders.conftest import picture, tone
from tests.serving.test_server import READ, WRITE, get, post, serve

pytestmark = pytest.mark.xdist_group("server")


def _service(tmp, encoders: dict[str, str], n: int = 12) -> Service:
    media = tmp / "media"
    media.mkdir()
    rows = [{"item_id": f"i{i}", "title": f"item {i}", "texts": {}, "attributes": {"k": str(i % 2)},
             "image": picture(media / f"p{i}.png", i % 3 + 1),
             "audio": tone(media / f"a{i}.wav", 200 + 50 * i, seconds=1.0) if "audio" in encoders else None}
            for i in range(n)]
    events = pd.DataFrame([{"user_id": f"u{u}", "item_id": f"i{(u + j) % n}", "timestamp": 100 + j,
                            "event_type": "like", "weight": 1.0, "context": "{}"} for u in range(10) for j in range(4)])
    store = tmp / "store.duckdb"
    with Store(store) as st:
        st.ingest(items=pd.DataFrame(rows), events=events)
        data = st.load_dataset()
    content = encode_items(data.items, {m: create_encoder(e) for m, e in encoders.items()}, progress=False).content
    model = create("ease", {"reg": 5.0}).fit(data.interactions)
    return Service(model, store, content, media=MediaPolicy(media, max_bytes=200_000))


@pytest.fixture(scope="module")
def audio_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("audio")
    service = _service(tmp, {"image": "color-texture", "audio": "mfcc-stats"})
    (tmp / "media" / "bad.mp3").write_bytes(b"ID3" + bytes(range(256)) * 20)
    with serve(service) as client:
        yield client, tmp


@pytest.fixture(scope="module")
def image_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("image")
    with serve(_service(tmp, {"image": "color-texture"})) as client:
        yield client, tmp


def _upload(client, item_id: str, **files):
    return client.post("/items/upload", data={"item": f'{{"item_id": "{item_id}"}}'}, files=files,
                       headers={"X-API-Key": WRITE})


def test_a_decoders_error_never_shows_a_server_path(audio_server):
    client, tmp = audio_server
    for ref in ("bad.mp3", "missing.mp3"):
        r = client.put(f"/items/x-{ref}", json={"title": "x", "audio": ref}, headers={"X-API-Key": WRITE})
        assert r.status_code == 422, r.text
        assert str(tmp) not in r.text and "/media" not in r.text, r.text
    r = _upload(client, "up-bad", audio=("a.mp3", b"ID3\x03\x00\x00\x00\x00\x00\x10" + b"\x00" * 4000, "audio/mpeg"))
    assert r.status_code == 422 and str(tmp) not in r.text


def _zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("song.txt", "not music " * 100)
    return out.getvalue()


def test_without_an_audio_encoder_an_upload_must_still_be_audio(image_server, tmp_path):
    client, tmp = image_server
    jpeg = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (16, 16), "red").save(jpeg, "JPEG")
    fakes = {"jpeg": jpeg.getvalue(), "id3": b"ID3\x03\x00\x00\x00\x00\x00\x10" + b"\x00" * 4000, "zip": _zip()}
    before = set((tmp / "media" / "uploads").glob("*")) if (tmp / "media" / "uploads").exists() else set()
    for name, data in fakes.items():
        r = _upload(client, f"fake-{name}", audio=("song.mp3", data, "audio/mpeg"))
        assert r.status_code == 422, (name, r.text)
        assert get(client, f"/items/fake-{name}").status_code == 404
    assert "JPEG" in _upload(client, "fake-again", audio=("song.mp3", fakes["jpeg"], "audio/mpeg")).json()["detail"]
    after = set((tmp / "media" / "uploads").glob("*")) if (tmp / "media" / "uploads").exists() else set()
    assert after == before  # nothing kept
    wav = tone(tmp_path / "real.wav", 440.0, seconds=0.5)
    r = _upload(client, "real-audio", audio=("whatever.mp3", open(wav, "rb").read(), "audio/mpeg"))
    assert r.status_code == 201, r.text
    assert get(client, "/items/real-audio").json()["audio"].endswith(".wav")  # the format found, not the name


def test_an_uploads_suffix_is_the_format_found_never_the_clients_name(image_server):
    client, tmp = image_server
    png = (tmp / "media" / "p0.png").read_bytes()
    r = _upload(client, "html-name", image=("x.html", png, "text/html"))
    assert r.status_code == 201, r.text
    stored = get(client, "/items/html-name").json()["image"]
    assert stored.endswith(".png") and not stored.endswith(".html")
    assert get(client, "/items/html-name/media/image").status_code == 200  # so it can be shown


def test_unknown_upload_fields_are_refused(image_server):
    client, tmp = image_server
    png = (tmp / "media" / "p0.png").read_bytes()
    r = _upload(client, "with-trailer", image=("p.png", png, "image/png"),
                trailer=("v.mp4", b"\x00" * 100, "video/mp4"))
    assert r.status_code == 422 and "trailer: not an upload field" in r.json()["detail"]
    assert get(client, "/items/with-trailer").status_code == 404


def test_a_weight_must_be_a_number_not_a_string(image_server):
    client, _ = image_server
    r = post(client, "/events", {"events": [{"user_id": "u1", "item_id": "i1", "weight": "5"}]})
    assert r.status_code == 422 and "weight" in r.json()["detail"]
    assert post(client, "/events", {"events": [{"user_id": "u1", "item_id": "i1", "weight": 5}]}).status_code == 201


def test_a_filter_with_an_empty_value_is_a_400(image_server):
    client, _ = image_server
    for f in ("k:", ":1", "k"):
        r = get(client, "/users/u1/recommendations", filter=f)
        assert r.status_code == 400 and "attribute:value" in r.json()["detail"], (f, r.text)


def test_a_429_says_when_to_retry_and_a_costly_list_costs_more(tmp_path):
    service = _service(tmp_path, {"image": "color-texture"})
    with serve(service, rate_limit=1.0, burst=30.0) as client:
        worst = get(client, "/users/u1/recommendations", k=1000, diversity=1)
        assert worst.status_code == 200
        # the worst case cost ~21 of the 30 units; ten plain lists cannot all follow
        codes = [get(client, "/users/u1/recommendations").status_code for _ in range(12)]
        assert 429 in codes and codes.count(200) < 12
        r = get(client, "/users/u1/recommendations")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert Request("u", 1000, diversity=1.0).cost > 10 * Request("u", 10).cost


def test_wrong_keys_are_throttled_per_address(tmp_path):
    service = _service(tmp_path, {"image": "color-texture"})
    with serve(service) as client:
        codes = [get(client, "/status", key=f"guess-{i:04d}").status_code for i in range(60)]
        assert codes[:10] == [401] * 10 and codes[-1] == 429
        r = get(client, "/status", key="guess-last")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert get(client, "/status", key=READ).status_code == 429  # a guess made now tells nothing
        assert client.get("/health").status_code == 200


def test_heavy_lists_run_beside_the_loop_and_health_never_waits_for_them(tmp_path):
    service = _service(tmp_path, {"image": "color-texture"})
    release, started = threading.Event(), threading.Semaphore(0)
    real_run = service.run

    def slow_run(request):
        if request.cost > HEAVY_COST:
            started.release()
            release.wait(20)
        return real_run(request)

    service.run = slow_run
    with serve(service) as client:
        results = []
        threads = [threading.Thread(target=lambda: results.append(
            get(client, "/users/u1/recommendations", k=1000, diversity=1))) for _ in range(2)]
        for t in threads:
            t.start()
        assert started.acquire(timeout=10) and started.acquire(timeout=10)  # both heavy lists are running
        t0 = time.perf_counter()
        assert client.get("/health", timeout=5).status_code == 200
        assert get(client, "/users/u2/recommendations", timeout=5).status_code == 200  # a cheap list too
        assert time.perf_counter() - t0 < 5
        release.set()
        for t in threads:
            t.join(20)
        assert [r.status_code for r in results] == [200, 200] and len(results[0].json()["items"]) == 12 - 4


def test_the_heavy_lane_refuses_what_it_cannot_start_soon():
    import asyncio

    lane = HeavyLane(workers=1, max_waiting=2, max_wait_s=0.3)
    gate = threading.Event()

    async def scenario():
        first = asyncio.create_task(lane.run(gate.wait, 10))
        await asyncio.sleep(0.05)
        waiting = [asyncio.create_task(lane.run(lambda: "late")) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(Busy):  # the queue is full: refused at once
            await lane.run(lambda: "more")
        outcomes = await asyncio.gather(*waiting, return_exceptions=True)
        gate.set()
        return await first, outcomes

    first, outcomes = asyncio.run(scenario())
    assert first is True and all(isinstance(o, Busy) and o.retry_after >= 1 for o in outcomes)
    lane.close()


def test_a_diverse_list_is_bounded_whatever_k_is_asked(monkeypatch):
    from mosaicrec.ranking.lists import ItemList

    seen = []
    real = selection.mmr

    def spy(candidates, scores, vectors, k, lam):
        seen.append((len(candidates), k))
        return real(candidates, scores, vectors, k, lam)

    monkeypatch.setattr(selection, "mmr", spy)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((5000, 16))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    items = np.arange(5000)
    cands = ItemList(items, np.linspace(1, 0, 5000))
    picked = selection.mmr_select(cands, vectors, 1000, 0.0)
    assert seen == [(selection.MMR_POOL, selection.MMR_PICKS)]
    assert len(picked) == 1000 and len(set(picked.items.tolist())) == 1000
    head = set(picked.items[:100].tolist())
    assert head <= set(range(selection.MMR_POOL)) and head != set(range(100))  # diverse, from the pool
    assert picked.items[100:].tolist() == [i for i in range(5000) if i not in head][:900]  # then by score


def test_retrain_jobs_are_remembered_up_to_a_bound(tmp_path):
    from mosaicrec.app.jobs import RetrainJobs

    service = _service(tmp_path, {"image": "color-texture"})
    service.model_root = tmp_path
    jobs = RetrainJobs(service, keep=3)
    jobs._run = lambda job: setattr(jobs, "_running", None)  # each job ends at once; the bound is tested
    ids = [jobs.start().job_id for _ in range(10)]
    time.sleep(0.2)
    assert list(jobs.jobs) == ids[-3:] and jobs.get(ids[0]) is None
    service.close()


def test_sasrec_builds_its_scoring_network_once_under_concurrent_first_requests(tmp_path, monkeypatch):
    from mosaicrec.models import load_model
    from mosaicrec.models.neural.sequential import SASRec
    from mosaicrec.models.query import Query
    from tests.models.test_sequential import FAST, cycles

    model = create("sasrec", FAST).fit(cycles())
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    built = []
    real = SASRec._new_net

    def slow_new_net(self, n):
        built.append(n)
        time.sleep(0.1)
        return real(self, n)

    monkeypatch.setattr(SASRec, "_new_net", slow_new_net)
    out = [None] * 6
    go = threading.Barrier(6)

    def score(i):
        go.wait()
        out[i] = loaded.query_factors(Query(users=np.array([1, 2])))

    threads = [threading.Thread(target=score, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 1 and all(np.array_equal(o, out[0]) for o in out)


def test_the_fold_in_cache_is_bounded_in_bytes(tmp_path):
    """A count bound (100,000 users) let a non-factor model's service grow by a score row per user."""
    service = _service(tmp_path, {"image": "color-texture"})
    service.scorer.FOLD_CACHE_BYTES = 3 * (200 + 12 * 4)  # three users' scores over 12 items
    for u in range(10):
        service.add_events(pd.DataFrame([{"user_id": f"new{u}", "item_id": f"i{u}", "timestamp": 10**9 + u,
                                          "event_type": "like", "weight": 1.0, "context": "{}"}]))
        assert service.recommend(f"new{u}", 3).cold_start is False
    assert len(service.scorer._folded) <= 3 and service.scorer._folded_bytes <= service.scorer.FOLD_CACHE_BYTES
    assert list(service.scorer._folded) == ["new7", "new8", "new9"]  # the oldest went first
    service.close()


def test_an_erasure_during_a_reload_stays_erased(tmp_path, monkeypatch):
    """The set of blocked model rows was read, changed and written back while a reload set it: an erasure
    in between could be lost, and the erased user's trained list served again."""
    from mosaicrec.ranking.live import LiveState

    service = _service(tmp_path, {"image": "color-texture"})
    assert not service.recommend("u3", 3).cold_start
    real = LiveState.refresh_changed
    entered = threading.Event()

    def slow_refresh(self, *args):
        entered.set()
        time.sleep(0.3)  # the erasure arrives while the reload recomputes the live state
        return real(self, *args)

    monkeypatch.setattr(LiveState, "refresh_changed", slow_refresh)
    model = create("ease", {"reg": 7.0}).fit(service.store.load_dataset().interactions)
    reload = threading.Thread(target=service.swap_model, args=(model,))
    reload.start()
    assert entered.wait(10)
    service.delete_user("u3")
    reload.join(10)
    assert "u3" in service.live.blocked and service.recommend("u3", 3).cold_start
    service.close()
