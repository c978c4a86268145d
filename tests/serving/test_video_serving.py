"""A video catalog served: uploads and paths checked in the decoding sandbox, hostile files refused with a
4xx that names no server path (and nothing kept), the video and its first frame served for the page, and
new videos recommendable and explained at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("av")

from mosaicrec.data.store import Store  # noqa: E402
from mosaicrec.encoders import create_encoder, encode_items  # noqa: E402
from mosaicrec.encoders.video_io import write_video  # noqa: E402
from mosaicrec.models import create  # noqa: E402
from mosaicrec.models.training import TrainingInfo  # noqa: E402
from mosaicrec.serving.media import MediaPolicy  # noqa: E402
from mosaicrec.serving.service import Service  # noqa: E402
from tests.encoders.test_video import _tone, ten_hours  # noqa: E402
from tests.serving.test_server import WRITE, get, post, serve  # noqa: E402

pytestmark = pytest.mark.xdist_group("server")
COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]
PARAMS = {"frames": "color-texture", "audio": "mfcc-stats", "max_frames": 4, "content": "parts"}


def clip(path: Path, kind: int, seconds: float = 1.0) -> Path:
    frames = []
    for i in range(int(24 * seconds)):
        img = np.empty((48, 64, 3), np.uint8)
        img[:] = COLOURS[kind]
        img[:, (3 * i) % 64:(3 * i) % 64 + 4] = 255
        frames.append(img)
    return write_video(path, frames, wave=_tone(220 * (kind + 1), seconds))


@pytest.fixture(scope="module")
def video_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("video")
    media = tmp / "media"
    media.mkdir()
    rows = [{"item_id": f"v{i}", "title": f"clip {i}", "texts": {}, "attributes": {"colour": str(i % 3)},
             "image": None, "audio": None, "video": str(clip(media / f"v{i}.mp4", i % 3))} for i in range(9)]
    events = pd.DataFrame([{"user_id": f"u{u}", "item_id": f"v{(u + j) % 9}", "timestamp": 100 + j,
                            "event_type": "like", "weight": 1.0, "context": "{}"} for u in range(8) for j in range(3)])
    store = tmp / "store.duckdb"
    with Store(store) as st:
        st.ingest(items=pd.DataFrame(rows), events=events)
        data = st.load_dataset()
    content = encode_items(data.items, {"video": create_encoder("video", **PARAMS)}, progress=False).content
    assert content.modalities == ["video_frames", "video_sound"]
    info = TrainingInfo(encoders={"video": {"name": "video", "params": PARAMS}})
    model = create("ease", {"reg": 5.0}).fit(data.interactions)
    policy = MediaPolicy(media, max_bytes=200_000, max_video_bytes=2_000_000)
    with serve(Service(model, store, content, info=info, media=policy), max_body_bytes=3_000_000) as client:
        yield client, tmp
    policy.sandbox.close()


def _upload(client, item_id: str, name: str, data: bytes):
    return client.post("/items/upload", data={"item": f'{{"item_id": "{item_id}", "title": "{item_id}"}}'},
                       files={"video": (name, data, "video/mp4")}, headers={"X-API-Key": WRITE})


def _uploads(tmp: Path) -> set[Path]:
    folder = tmp / "media" / "uploads"
    return set(folder.iterdir()) if folder.exists() else set()


def test_an_uploaded_video_is_served_with_its_first_frame_and_recommended_at_once(video_server, tmp_path):
    client, tmp = video_server
    data = clip(tmp_path / "new.webm", 1).read_bytes()  # VP9 + Opus, green
    r = _upload(client, "new-green", "holiday.mp4", data)  # the client's name says MP4: the bytes decide
    assert r.status_code == 201, r.text
    stored = get(client, "/items/new-green").json()["video"]
    assert stored.endswith(".webm") and "holiday" not in stored
    played = get(client, "/items/new-green/media/video")
    assert played.status_code == 200 and played.headers["content-type"] == "video/webm"
    assert played.content == data and played.headers["x-content-type-options"] == "nosniff"
    frame = get(client, "/items/new-green/media/frame")
    assert frame.status_code == 200 and frame.headers["content-type"] == "image/jpeg"
    from PIL import Image
    import io
    pixels = np.asarray(Image.open(io.BytesIO(frame.content)).convert("RGB")).reshape(-1, 3)
    assert int(np.argmax(np.median(pixels, axis=0))) == 1  # the first frame is green
    similar = get(client, "/items/new-green/similar", k=3).json()["items"]
    assert {i["item_id"] for i in similar} == {"v1", "v4", "v7"}  # the green clips, by picture and sound
    by_sound = get(client, "/items/new-green/similar", k=3, modality="video_sound").json()["items"]
    assert {i["item_id"] for i in by_sound} == {"v1", "v4", "v7"}
    recs = get(client, "/users/u1/recommendations", k=9, reasons="content").json()["items"]
    assert "new-green" in [i["item_id"] for i in recs]  # recommendable by content, no retraining
    assert all(i.get("explanation") for i in recs if i["item_id"] == "new-green")
    got = client.get("/ui/api/cards?id=new-green&id=v0", headers={"X-API-Key": WRITE}).json()["cards"]
    cards = {c["item_id"]: c for c in got}
    assert cards["new-green"]["video"] and not cards["new-green"]["image"] and cards["v0"]["video"]


@pytest.mark.parametrize("case", ["truncated", "ten hours", "not a video", "a song named .mp4"])
def test_hostile_videos_are_a_422_naming_no_server_path_and_nothing_is_kept(video_server, tmp_path, case):
    client, tmp = video_server
    good = (tmp / "media" / "v0.mp4").read_bytes()
    if case == "truncated":
        data = good[: len(good) // 2]
    elif case == "ten hours":
        data = ten_hours(tmp_path / "ten.mp4").read_bytes()
    elif case == "not a video":
        data = b"<html><script>alert(1)</script></html>" * 10
    else:
        import soundfile as sf
        sf.write(tmp_path / "s.wav", _tone(300, 0.5), 44_100)
        data = (tmp_path / "s.wav").read_bytes()
    before = _uploads(tmp)
    r = _upload(client, f"bad-{case.replace(' ', '-')}", "x.mp4", data)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith("video:") and str(tmp) not in detail, detail
    assert "uploads" not in detail and ".part" not in detail, detail  # not even the server's own file name
    assert _uploads(tmp) == before
    assert get(client, f"/items/bad-{case.replace(' ', '-')}").status_code == 404
    assert get(client, "/health").status_code == 200


def test_a_video_over_its_size_limit_is_a_413(video_server):
    client, _ = video_server
    r = _upload(client, "too-big", "big.mp4", b"\x00\x00\x00\x18ftypisom" + bytes(2_100_000))
    assert r.status_code == 413 and "2,000,000" in r.json()["detail"]


def test_a_video_path_must_lie_in_the_media_root_and_be_a_video(video_server, tmp_path):
    client, tmp = video_server
    ok = post(client, "/items", {"items": [{"item_id": "by-path", "title": "by path", "video": "v2.mp4"}]})
    assert ok.status_code == 201, ok.text
    assert get(client, "/items/by-path/similar", k=3).status_code == 200
    outside = clip(tmp_path / "outside.mp4", 0)
    r = post(client, "/items", {"items": [{"item_id": "escape", "video": str(outside)}]})
    assert r.status_code == 422 and "inside the media root" in r.json()["detail"]
    (tmp / "media" / "fake.mp4").write_text("not a video at all")
    r = post(client, "/items", {"items": [{"item_id": "fake", "video": "fake.mp4"}]})
    assert r.status_code == 422 and "not a video" in r.json()["detail"] and str(tmp) not in r.json()["detail"]
