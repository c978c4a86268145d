"""The service probed as an attacker would: media paths, body sizes, decompression bombs, reloads, keys.

Each test here failed on the service as it was before serving became a pipeline (issue 13)."""

import os
import struct
import zlib

import numpy as np
import pandas as pd
import pytest

from mosaicrec.data.store import Store
from mosaicrec.encoders import create_encoder, encode_items
from mosaicrec.models import create
from mosaicrec.serving.media import MediaPolicy
from mosaicrec.serving.service import Service
from tests.encoders.conftest import picture
from tests.serving.test_server import ADMIN, WRITE, get, post, serve

pytestmark = pytest.mark.xdist_group("server")


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width × height`` pixels (the 69-byte decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("secure")
    media = tmp / "media"
    media.mkdir()
    rows = []
    for i in range(12):
        rows.append({"item_id": f"i{i}", "title": f"picture {i}", "texts": {}, "attributes": {"k": str(i % 2)},
                     "image": picture(media / f"p{i}.png", i % 3 + 1), "audio": None})
    items = pd.DataFrame(rows)
    events = pd.DataFrame([{"user_id": f"u{u}", "item_id": f"i{(u + j) % 12}", "timestamp": 100 + j,
                            "event_type": "like", "weight": 1.0, "context": "{}"} for u in range(10) for j in range(4)])
    store = tmp / "store.duckdb"
    with Store(store) as st:
        st.ingest(items=items, events=events)
        data = st.load_dataset()
    content = encode_items(data.items, {"image": create_encoder("color-texture")}, progress=False).content
    (tmp / "outside.png").write_bytes(open(media / "p1.png", "rb").read())
    os.symlink(tmp / "outside.png", media / "escape.png")
    os.mkfifo(media / "fifo.png")
    (media / "big.png").write_bytes(b"\x89PNG" + b"\x00" * 300_000)
    (media / "bomb.png").write_bytes(png_declaring(50_000, 50_000))
    (media / "huge.png").write_bytes(png_declaring(12_000, 12_000))
    models = tmp / "models"
    model = create("ease", {"reg": 5.0}).fit(data.interactions)
    model.save(models / "ease")
    service = Service(model, store, content, media=MediaPolicy(media, max_bytes=200_000), model_root=models)
    with serve(service, max_body_bytes=20_000) as client:
        yield client, tmp, service


def new_item(item_id, image):
    return {"items": [{"item_id": item_id, "title": "x", "image": image}]}


@pytest.mark.parametrize("ref", ["/dev/zero", "/etc/shadow", "/etc/passwd", "../outside.png", "escape.png",
                                 "http://127.0.0.1:1/x.png", "file:///etc/passwd", "fifo.png", "big.png",
                                 "no-such.png"])
def test_media_paths_outside_the_root_or_not_regular_files_are_refused_quickly(secured, ref):
    client, tmp, _ = secured
    r = post(client, "/items", new_item("evil", ref))
    assert r.status_code in (413, 422), r.text
    detail = r.json()["detail"]
    assert "root:" not in detail and str(tmp) not in detail and "shadow:" not in detail  # no server facts
    assert get(client, "/items/evil").status_code == 404  # nothing written


def test_a_path_inside_the_media_root_is_accepted(secured):
    client, _, service = secured
    r = post(client, "/items", new_item("inside", "p2.png"))
    assert r.status_code == 201, r.text
    assert service.snapshot.content.modality_masks["image"][service.snapshot.catalog.index["inside"]]


@pytest.mark.parametrize("name", ["bomb.png", "huge.png"])
def test_decompression_bombs_are_a_4xx_not_a_500(secured, name):
    client, _, _ = secured
    r = post(client, "/items", new_item(f"bomb-{name}", name))
    assert r.status_code == 422 and "too large" in r.json()["detail"], r.text


def test_a_chunked_body_over_the_limit_is_refused_by_bytes_read(secured):
    client, _, _ = secured

    def chunks():  # no Content-Length: the old limit never saw this
        for _ in range(200):
            yield b" " * 1_000
    r = client.post("/events", content=chunks(), headers={"X-API-Key": WRITE, "Content-Type": "application/json"})
    assert r.status_code == 413 and "exceeds" in r.json()["detail"]


def test_text_fields_are_bounded(secured):
    client, _, _ = secured
    assert post(client, "/items", {"items": [{"item_id": "t", "title": "x" * 2_001}]}).status_code == 422
    r = post(client, "/items", {"items": [{"item_id": "t", "texts": {"plot": "y" * 20_001}}]})
    assert r.status_code in (413, 422)
    assert post(client, "/items", {"items": [{"item_id": "bad\nid"}]}).status_code == 422


def test_upload_stores_the_file_in_the_media_root_and_refuses_oversized_or_broken_ones(secured):
    client, tmp, service = secured
    png = open(tmp / "media" / "p0.png", "rb").read()
    files = {"image": ("cover.png", png, "image/png")}
    r = client.post("/items/upload", data={"item": '{"item_id": "up1", "title": "uploaded"}'}, files=files,
                    headers={"X-API-Key": WRITE})
    assert r.status_code == 201, r.text
    stored = get(client, "/items/up1").json()["image"]
    assert stored.startswith(str(tmp / "media" / "uploads"))
    broken = {"image": ("x.png", b"not an image at all", "image/png")}
    r = client.post("/items/upload", data={"item": '{"item_id": "up2"}'}, files=broken, headers={"X-API-Key": WRITE})
    assert r.status_code == 422 and get(client, "/items/up2").status_code == 404
    assert len(os.listdir(tmp / "media" / "uploads")) == 1  # the refused file was not kept
    big = {"image": ("b.png", b"\x00" * 600_000, "image/png")}
    r = client.post("/items/upload", data={"item": '{"item_id": "up3"}'}, files=big, headers={"X-API-Key": WRITE})
    assert r.status_code == 413


def test_reload_is_confined_to_the_model_root_and_checks_the_catalog(secured):
    client, tmp, service = secured
    other = create("mostpop").fit(_other_catalog())
    other.save(tmp / "models" / "kuairand-like")
    other.save(tmp / "elsewhere")
    (tmp / "models" / "broken").mkdir()
    (tmp / "models" / "broken" / "model.json").write_text('{"model": "ease", "config": {"reg": "lots"}}')
    for body, status, text in [({"model_dir": str(tmp / "elsewhere")}, 422, "inside the model root"),
                               ({"model_dir": "../elsewhere"}, 422, "inside the model root"),
                               ({"model_dir": "kuairand-like"}, 422, "another catalog"),
                               ({"model_dir": "broken"}, 422, "cannot load"),
                               ({"model_dir": "missing"}, 422, "no saved model")]:
        r = post(client, "/admin/reload", body, key=ADMIN)
        assert r.status_code == status and text in r.json()["detail"], (body, r.text)
    assert get(client, "/status").json()["model"] == "ease"  # the old model kept serving
    assert get(client, "/users/u1/recommendations").status_code == 200


def _other_catalog():
    from mosaicrec.data.schema import Interactions
    return Interactions.from_arrays(np.arange(20) % 5, 1000 + np.arange(20) % 7)


def test_each_route_needs_the_key_it_documents(secured):
    client, _, _ = secured
    health = client.get("/health")
    assert health.status_code == 200 and health.json() == {"status": "ok"}  # no counts for the world
    assert client.get("/ready").json() == {"ready": True}
    for path in ("/metrics", "/docs", "/openapi.json", "/status"):
        assert client.get(path).status_code == 401, path
        assert get(client, path).status_code == 200, path
    spec = get(client, "/openapi.json").json()
    rec = spec["paths"]["/users/{user_id}/recommendations"]["get"]["responses"]["200"]["content"]
    assert "Recommended" in str(rec)  # typed responses are documented (the pipeline's own value)
    assert post(client, "/admin/reload", {"model_dir": "ease"}, key=WRITE).status_code == 403
    assert post(client, "/admin/reload", {"model_dir": "ease"}, key=ADMIN).status_code == 200


def test_docs_can_be_made_public(tmp_path):
    x = _other_catalog()
    with Store(tmp_path / "s.duckdb") as st:
        st.ingest(events=pd.DataFrame({"user_id": x.user_ids[x.users], "item_id": x.item_ids[x.items], "timestamp": 1,
                                       "event_type": "v", "weight": 1.0, "context": "{}"}))
    service = Service(create("mostpop").fit(x), tmp_path / "s.duckdb")
    with serve(service, public_docs=True) as client:
        assert client.get("/openapi.json").status_code == 200 and client.get("/metrics").status_code == 401


def test_api_keys_come_from_a_file_or_the_environment_not_only_the_command_line(tmp_path, monkeypatch):
    from mosaicrec.errors import ConfigError
    from mosaicrec.serving.auth import load_keys

    (tmp_path / "keys").write_text("# operators\nreader-key-1:read\nadmin-key-1:admin\n")
    monkeypatch.setenv("MOSAICREC_API_KEYS", "writer-key-1:write")
    assert load_keys(tmp_path / "keys") == {"reader-key-1": "read", "admin-key-1": "admin", "writer-key-1": "write"}
    (tmp_path / "bad").write_text("short:read\n")
    with pytest.raises(ConfigError, match="at least 8") as e:
        load_keys(tmp_path / "bad")
    assert "short" not in str(e.value).split(":")[-1]  # the message never echoes a key


def test_non_finite_and_out_of_range_numbers_are_refused(secured):
    client, _, _ = secured
    raw = [b'{"events": [{"user_id": "u1", "item_id": "i1", "weight": NaN}]}',
           b'{"events": [{"user_id": "u1", "item_id": "i1", "weight": Infinity}]}',
           b'{"events": [{"user_id": "u1", "item_id": "i1", "weight": 1e400}]}',
           b'{"events": [{"user_id": "u1", "item_id": "i1", "timestamp": 9223372036854775808}]}',
           b'{"events": [{"user_id": "u1", "item_id": "i1", "timestamp": -5}]}']
    for body in raw:
        r = client.post("/events", content=body, headers={"X-API-Key": WRITE, "Content-Type": "application/json"})
        assert r.status_code == 422, (body, r.text)


def test_error_messages_keep_their_quotes(secured):
    client, _, _ = secured
    r = post(client, "/events", {"events": [{"user_id": "u1", "item_id": "9999"}]})
    assert r.status_code == 404 and "'9999'" in r.json()["detail"]

