"""The encode stage: cache by content, broken inputs isolated per item and modality, and the summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mosaicrec.data.content import ItemContent
from mosaicrec.encoders import EmbeddingCache, create_encoder, encode_items, item_inputs
from tests.encoders.conftest import picture


def _encoders():
    # Fast encoders keep these tests about the stage; the pretrained ones have their own tests.
    return {"text": create_encoder("tfidf", min_df=1), "image": create_encoder("color-texture"),
            "audio": create_encoder("mfcc-stats", max_seconds=1.0)}


def test_item_inputs_join_title_and_text_fields(media_catalog: pd.DataFrame):
    texts = item_inputs(media_catalog, "text")
    assert texts[0] == "A cat sits on the mat. description: a small cat"
    assert item_inputs(media_catalog, "text", ["description"])[0] == "description: a small cat"
    assert item_inputs(media_catalog, "audio")[5] is None


def test_broken_inputs_fail_their_item_only_with_reasons(media_catalog: pd.DataFrame, tmp_path: Path):
    with EmbeddingCache(tmp_path / "emb.duckdb") as cache:
        result = encode_items(media_catalog, _encoders(), cache=cache, progress=False)
    reports = {r.name: r for r in result.reports}
    fails = {name: dict(rep.failures) for name, rep in reports.items()}
    assert fails["text"] == {"5": "empty text"}
    assert set(fails["image"]) == {"3", "4", "5"}
    assert fails["image"]["3"].startswith("not an image") or fails["image"]["3"].startswith("corrupt image")
    assert fails["image"]["4"].startswith("corrupt image")
    assert fails["image"]["5"].startswith("file not found")
    assert list(fails["audio"]) == ["4"] and fails["audio"]["4"].startswith("unreadable audio")
    assert reports["audio"].absent == 4 and reports["image"].absent == 1
    c = result.content
    # Item 3 has a corrupt poster but keeps its text and audio; item 4 keeps its text.
    i3, i4 = c.index_of("3"), c.index_of("4")
    assert c.masks["text"][i3] and c.masks["audio"][i3] and not c.masks["image"][i3]
    assert c.masks["text"][i4] and not c.masks["image"][i4] and not c.masks["audio"][i4]
    assert not c.features["image"][i3].any()
    ok = c.masks["image"]
    np.testing.assert_allclose(np.linalg.norm(c.features["image"][ok], axis=1), 1.0, atol=1e-5)
    assert "failed: 1 corrupt image" in reports["image"].describe() or "corrupt image" in reports["image"].describe()
    frame = result.failures()
    assert len(frame) == 1 + 3 + 1 and set(frame.columns) == {"name", "encoder", "item_id", "reason"}


def test_second_run_is_all_cache_hits_and_loads_no_model(media_catalog: pd.DataFrame, tmp_path: Path):
    with EmbeddingCache(tmp_path / "emb.duckdb") as cache:
        first = encode_items(media_catalog, {"image": create_encoder("efficientnet-lite0")}, cache=cache,
                             progress=False)
        fresh = create_encoder("efficientnet-lite0")
        second = encode_items(media_catalog, {"image": fresh}, cache=cache, progress=False)
    r1, r2 = first.reports[0], second.reports[0]
    assert r1.encoded == 4 and r1.cached == 0
    assert r2.encoded == 0 and r2.cached == 4 and not r2.loaded_model and not fresh._ready
    # Failures are remembered too: the corrupt files are not decoded again.
    assert dict(r2.failures) == dict(r1.failures)
    np.testing.assert_array_equal(first.content.features["image"], second.content.features["image"])


def test_identical_content_is_encoded_once(media_catalog: pd.DataFrame, tmp_path: Path):
    with EmbeddingCache(tmp_path / "emb.duckdb") as cache:
        result = encode_items(media_catalog, {"image": create_encoder("color-texture")}, cache=cache,
                              progress=False)
        assert cache.counts() == {result.content.sources["image"]: 3}  # items 1 and 7 share a.png
    c = result.content
    np.testing.assert_array_equal(c.features["image"][c.index_of("1")], c.features["image"][c.index_of("7")])
    assert result.reports[0].encoded == 4


def test_changed_file_or_text_re_encodes_only_that_item(media_catalog: pd.DataFrame, tmp_path: Path):
    enc = {"image": create_encoder("color-texture"), "text": create_encoder("minilm")}
    with EmbeddingCache(tmp_path / "emb.duckdb") as cache:
        before = encode_items(media_catalog, enc, cache=cache, progress=False)
        picture(Path(media_catalog.loc[7, "image"]), 11)  # item 8's poster replaced on disk
        edited = media_catalog.copy()
        edited.at[5, "texts"] = {"description": "heavy rain and wind tomorrow"}
        after = encode_items(edited, enc, cache=cache, progress=False)
    image, text = after.reports[0], after.reports[1]
    assert image.encoded == 1 and image.cached == 3
    assert text.encoded == 1 and text.cached == 6
    i8, i6 = before.content.index_of("8"), before.content.index_of("6")
    assert not np.allclose(before.content.features["image"][i8], after.content.features["image"][i8])
    assert not np.allclose(before.content.features["text"][i6], after.content.features["text"][i6])


def test_an_interrupted_run_keeps_what_it_encoded(media_catalog: pd.DataFrame, tmp_path: Path):
    enc = create_encoder("color-texture", batch_size=1)
    real_forward, calls = enc.forward, []

    def forward(batch):
        calls.append(1)
        if len(calls) == 3:  # Ctrl-C during the third model call
            raise KeyboardInterrupt
        return real_forward(batch)

    enc.forward = forward
    with EmbeddingCache(tmp_path / "emb.duckdb") as cache:
        with pytest.raises(KeyboardInterrupt):
            encode_items(media_catalog, {"image": enc}, cache=cache, progress=False)
        assert cache.counts() == {enc.key: 2}
        again = encode_items(media_catalog, {"image": create_encoder("color-texture", batch_size=1)},
                             cache=cache, progress=False)
        assert cache.counts() == {enc.key: 3}
    report = again.reports[0]
    # Three distinct good posters (items 1 and 7 share one): two came from the interrupted run, the third
    # is encoded now.
    assert report.ok == 4 and report.cached + report.encoded == 4 and 1 <= report.encoded <= 2
    assert {item for item, _ in report.failures} == {"3", "4", "5"}


def test_fixing_a_broken_file_clears_its_cached_failure(media_catalog: pd.DataFrame, tmp_path: Path):
    enc = {"image": create_encoder("color-texture")}
    with EmbeddingCache(tmp_path / "emb.duckdb") as cache:
        encode_items(media_catalog, enc, cache=cache, progress=False)
        picture(Path(media_catalog.loc[2, "image"]).with_suffix(".png"), 4)
        fixed = media_catalog.copy()
        fixed.at[2, "image"] = str(Path(media_catalog.loc[2, "image"]).with_suffix(".png"))
        after = encode_items(fixed, enc, cache=cache, progress=False)
    assert "3" not in dict(after.reports[0].failures)
    assert after.content.masks["image"][after.content.index_of("3")]


def test_content_saves_loads_and_aligns(media_catalog: pd.DataFrame, tmp_path: Path):
    result = encode_items(media_catalog, {"image": create_encoder("color-texture")}, progress=False)
    result.content.save(tmp_path / "c.npz")
    back = ItemContent.load(tmp_path / "c.npz")
    np.testing.assert_array_equal(back.features["image"], result.content.features["image"])
    assert back.sources == result.content.sources
    aligned = back.align(np.array(["8", "x", "1"], dtype=object))
    assert aligned.masks["image"].tolist() == [True, False, True]
    np.testing.assert_array_equal(aligned.features["image"][2], back.features["image"][back.index_of("1")])
    top, sims = back.nearest("image", back.index_of("1"), k=2)
    assert back.item_ids[top[0]] == "7" and sims[0] == pytest.approx(1.0)
