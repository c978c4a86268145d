"""The CLI run as a person runs it: a real process, real files, a real store."""

import json
import os
import subprocess
import sys

import pytest


def cli(*args, cwd, check=True):
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "mosaicrec.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def files(tmp_path):
    (tmp_path / "items.csv").write_text(
        "item_id,title\n" + "".join(f"i{i},Film number {i}\n" for i in range(30)))
    rows = ["user_id,item_id,weight,timestamp"]
    for u in range(40):
        for j in range(8):
            rows.append(f"u{u},i{(u % 3) * 10 + (u + j) % 10},1,{u * 100 + j}")
    (tmp_path / "events.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def test_ingest_train_recommend_prints_titles(files):
    store = str(files / "s.duckdb")
    out = cli("ingest", "--events", "events.csv", "--items", "items.csv", "--store", store, cwd=files).stdout
    assert "320 new events" in out
    again = cli("ingest", "--events", "events.csv", "--items", "items.csv", "--store", store, cwd=files).stdout
    assert "0 new events" in again
    cli("train", "--model", "ease", "--param", "reg=5", "--store", store, "--out", "model", cwd=files)
    rec = cli("recommend", "--user", "u0", "--model", "model", "-k", "3", cwd=files).stdout
    assert rec.count("Film number") == 3
    ctx = cli("recommend", "--user", "u0", "--model", "model", "--scenario", "feed", cwd=files, check=False)
    assert ctx.returncode == 1 and "ranks the same in every context" in ctx.stderr


def test_bad_row_is_one_line_error_without_traceback(files):
    (files / "bad.csv").write_text("user_id,item_id,weight,timestamp\na,x,1,10\nb,y,lots,20\n")
    proc = cli("ingest", "--events", "bad.csv", "--store", str(files / "s.duckdb"), cwd=files, check=False)
    assert proc.returncode == 1
    assert 'bad.csv row 2, column "weight": expected a number, got \'lots\'' in proc.stderr
    assert "Traceback" not in proc.stderr
    debug = cli("--debug", "ingest", "--events", "bad.csv", cwd=files, check=False)
    assert "Traceback" in debug.stderr


def test_reject_mode_reports_counts(files):
    (files / "bad.csv").write_text("user_id,item_id,weight,timestamp\na,x,1,10\nb,y,lots,20\n")
    out = cli("ingest", "--events", "bad.csv", "--on-error", "reject", "--rejects-dir", "rej",
              "--store", str(files / "s.duckdb"), cwd=files).stdout
    assert "1 of 2 rows loaded, 1 rejected" in out
    assert (files / "rej" / "bad.csv.rejects.csv").exists()


def test_unknown_user_is_a_clear_error(files):
    store = str(files / "s.duckdb")
    cli("ingest", "--events", "events.csv", "--store", store, cwd=files)
    cli("train", "--model", "mostpop", "--store", store, "--out", "m", cwd=files)
    proc = cli("recommend", "--user", "nobody", "--model", "m", cwd=files, check=False)
    assert proc.returncode == 1 and "unknown user id 'nobody'" in proc.stderr


def test_evaluate_from_a_config_file_with_user_files(files):
    (files / "exp.toml").write_text(f"""
name = "small"
output_dir = "runs"
[dataset.source]
events = "{files / 'events.csv'}"
items = "{files / 'items.csv'}"
[split]
kind = "leave_last_out"
[evaluation]
ks = [5]
[[models]]
name = "mostpop"
[[models]]
name = "itemknn"
""")
    out = cli("evaluate", "exp.toml", "--out", "report", cwd=files).stdout
    assert "itemknn" in out
    data = json.loads((files / "report" / "results.json").read_text())
    assert data["split"]["kind"] == "leave_last_out" and len(data["models"]) == 2
    assert (files / "report" / "config.json").exists()


def test_version_prints_without_a_command(tmp_path):
    assert cli("--version", cwd=tmp_path).stdout.strip() == "mosaicrec 0.1.0"


def test_datasets_list_names_the_builtins(tmp_path):
    out = cli("datasets", "list", cwd=tmp_path).stdout
    assert "movielens-100k" in out and "ml100k-multimodal" in out


def test_ingest_a_source_file_with_a_column_mapping(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "clicks.jsonl").write_text(
        '{"customer": "c1", "sku": "s1", "ts": "2024-05-01T10:00:00Z", "scenario": "home"}\n'
        '{"customer": "c2", "sku": "s1", "ts": "2024-05-02T10:00:00Z", "scenario": "search"}\n')
    (data / "catalog.csv").write_text("sku,name,brand\ns1,Red shoe,Acme\ns2,Blue hat,Hatco\n")
    source = """
name = "shop"
events = "data/clicks.jsonl"
items = "data/catalog.csv"
[event_schema]
user = "customer"
item = "sku"
timestamp = "ts"
context = ["scenario"]
{weight}
[item_schema]
id = "sku"
title = "name"
attributes = ["brand"]
"""
    (tmp_path / "shop.toml").write_text(source.format(weight=""))  # no weight column: every event weighs 1
    proc = cli("ingest", "--source", "shop.toml", "--store", "s.duckdb", cwd=tmp_path)
    assert "2 new events" in proc.stdout and "2 new items" in proc.stdout
    (tmp_path / "shop.toml").write_text(source.format(weight='weight = "quantity"'))
    proc = cli("ingest", "--source", "shop.toml", "--store", "s.duckdb", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert 'clicks.jsonl, column "quantity": missing column; the file has: customer, sku, ts, scenario' in proc.stderr


def test_encode_a_catalog_then_rerun_from_the_cache(tmp_path):
    from tests.encoders.conftest import picture

    (tmp_path / "posters").mkdir()
    for i in range(4):
        picture(tmp_path / "posters" / f"{i}.png", i + 1)
    (tmp_path / "posters" / "3.png").write_bytes(b"broken")
    (tmp_path / "items.csv").write_text(
        "item_id,name,plot,poster\n"
        "a,Red planet,astronauts land on mars,posters/0.png\n"
        "b,Blue ocean,whales sing in the deep sea,posters/1.png\n"
        "c,Green hills,sheep graze on green hills,posters/2.png\n"
        "d,Night city,neon lights and rain,posters/3.png\n")
    (tmp_path / "events.csv").write_text("user_id,item_id\nu1,a\nu1,b\nu2,c\n")
    (tmp_path / "films.toml").write_text(
        'name = "films"\nevents = "events.csv"\nitems = "items.csv"\n'
        '[item_schema]\ntitle = "name"\ntexts = ["plot"]\nimage = "poster"\n')
    cli("ingest", "--source", "films.toml", "--store", "s/store.duckdb", cwd=tmp_path)
    args = ("encode", "--store", "s/store.duckdb", "--encoder", "text=tfidf", "--encoder",
            "image=color-texture", "--param", "tfidf.min_df=1")
    first = cli(*args, cwd=tmp_path)
    assert "text (tfidf@" in first.stdout and "4/4 items have vectors (0 from cache, 4 encoded" in first.stdout
    assert "3/4 items have vectors (0 from cache, 3 encoded" in first.stdout
    assert "failed: 1 not an image" in first.stdout
    assert (tmp_path / "s" / "embeddings.duckdb").exists() and (tmp_path / "s" / "content.npz").exists()
    assert "posters/3.png" in (tmp_path / "s" / "encode_failures.csv").read_text() or \
        "3.png" in (tmp_path / "s" / "encode_failures.csv").read_text()
    again = cli(*args, cwd=tmp_path)
    assert "4/4 items have vectors (4 from cache, 0 encoded" in again.stdout
    bad = cli("encode", "--store", "s/store.duckdb", "--encoder", "text=clip", cwd=tmp_path, check=False)
    assert bad.returncode == 1 and "unknown encoder 'clip'" in bad.stderr


@pytest.mark.xdist_group("real-data")
def test_evaluate_multimodal_config_with_cold_start_on_real_data(tmp_path):
    from tests.conftest import SHARED

    if not (SHARED / "ml100k-multimodal").is_dir():
        pytest.skip(f"real multimodal data not found at {SHARED}")
    # fast baseline encoders keep this test short; the pretrained ones run in benchmarks/multimodal.py
    (tmp_path / "mm.toml").write_text(
        'name = "mm"\n[dataset]\nname = "ml100k-multimodal"\n[split]\nrating_threshold = 4\n'
        '[content]\nencoders = { text = "tfidf", image = "color-texture" }\ntext_fields = ["title", "description"]\n'
        'cache = "emb.duckdb"\n[cold_start]\nitems = 0.2\nusers = 0.2\n'
        '[[models]]\nname = "mostpop"\n[[models]]\nname = "content-knn"\n'
        '[[models]]\nname = "hybrid"\nparams = { epochs = 2, fusion = { kind = "gated" } }\n')
    cli("evaluate", "mm.toml", "--out", "run", cwd=tmp_path)
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    rows = {m["label"]: m for m in result["models"]}
    assert set(rows["hybrid"]["cold"]) == {"new items", "new users"}
    held = result["split"]["cold_start"]["new items"]["held_out"]
    assert 250 < held < 400  # a fifth of the rated films
    assert rows["content-knn"]["cold"]["new items"]["ndcg@10"] > 3 * rows["mostpop"]["cold"]["new items"]["ndcg@10"]
    assert "new items: ndcg@10" in (tmp_path / "run" / "report.md").read_text()


def test_serve_starts_from_the_cli_and_answers(files):
    import socket
    import time

    import httpx

    cli("ingest", "--events", "events.csv", "--items", "items.csv", "--store", "s.duckdb", cwd=files)
    cli("train", "--model", "ease", "--param", "reg=10", "--out", "m", "--store", "s.duckdb", cwd=files)
    bad = cli("serve", "--model", "m", "--store", "s.duckdb", cwd=files, check=False)
    assert bad.returncode == 1 and "--api-key" in bad.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "mosaicrec.cli", "serve", "--model", "m", "--store", "s.duckdb",
                             "--api-key", "k:write", "--encoder", "text=minilm", "--port", str(port)], cwd=files,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(240):
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.25)
        r = httpx.get(f"{url}/users/u0/recommendations", params={"k": 3}, headers={"X-API-Key": "k"})
        assert r.status_code == 200 and len(r.json()["items"]) == 3
        assert all(i["title"].startswith("Film number") for i in r.json()["items"])
    finally:
        proc.terminate()
        proc.wait(10)
