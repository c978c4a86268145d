"""Each encoder loads offline from its package, returns unit-length float32 rows, and means something."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mosaicrec.encoders import ENCODERS, MediaError, create_encoder
from mosaicrec.encoders.audio import yamnet_patches
from mosaicrec.errors import ConfigError
from tests.encoders.conftest import picture, tone


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_every_registered_encoder_names_its_modality_and_packages():
    assert {"minilm", "e5-multilingual", "tfidf", "efficientnet-lite0", "color-texture", "yamnet",
            "mfcc-stats", "video"} <= set(ENCODERS)
    for cls in ENCODERS.values():
        assert cls.modality in ("text", "image", "audio", "video") and cls.description


def test_unknown_encoder_and_bad_parameter_are_config_errors():
    with pytest.raises(ConfigError, match="unknown encoder 'clip'"):
        create_encoder("clip")
    with pytest.raises(ConfigError, match="batch_size"):
        create_encoder("minilm", batch_size=0)
    with pytest.raises(ConfigError, match="extra"):
        create_encoder("yamnet", sample_rate=8000)


def test_minilm_puts_paraphrases_together_with_unit_norm_rows():
    enc = create_encoder("minilm")
    x = enc.encode(["a cat sits on the mat", "a kitten lies on a rug", "stock markets fell sharply today"])
    assert x.dtype == np.float32 and x.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert x[0] @ x[1] > x[0] @ x[2] + 0.3


def test_multilingual_encoder_matches_chinese_to_its_translation():
    enc = create_encoder("e5-multilingual")
    x = enc.encode(["今天天气很好，阳光明媚", "The weather is lovely and sunny today", "The stock market crashed"])
    assert x.shape == (3, 384)
    assert x[0] @ x[1] > x[0] @ x[2]
    q = enc.encode_queries(["sunny weather"])
    assert q.shape == (1, 384) and q[0] @ x[1] > q[0] @ x[2]


def test_empty_text_is_a_media_error_naming_the_input():
    with pytest.raises(MediaError, match="empty text: input 1"):
        create_encoder("tfidf").fit(["apple pie", "apple tart", "blue sky"]).encode(["apple", "   "])


def test_tfidf_version_follows_the_corpus_it_was_fitted_on():
    a = create_encoder("tfidf").fit(["red apple pie", "green apple tart", "blue sky"])
    b = create_encoder("tfidf").fit(["red apple pie", "green apple tart", "grey sky"])
    again = create_encoder("tfidf").fit(["blue sky", "red apple pie", "green apple tart"])
    assert a.key != b.key and a.key == again.key
    x = a.encode(["red apple pie", "green apple tart", "blue sky"])
    assert x[0] @ x[1] > x[0] @ x[2]


def test_image_backbone_sees_a_flipped_picture_as_the_same(tmp_path: Path):
    from PIL import Image, ImageOps

    a = picture(tmp_path / "a.png", 1)
    flipped = tmp_path / "flip.png"
    ImageOps.mirror(Image.open(a)).save(flipped)
    other = picture(tmp_path / "o.png", 7, "noise")
    enc = create_encoder("efficientnet-lite0")
    x = enc.encode([a, str(flipped), other])
    assert x.shape == (3, 1280) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert x[0] @ x[1] > x[0] @ x[2] + 0.1


def test_corrupt_image_is_a_media_error(tmp_path: Path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    for name in ("efficientnet-lite0", "color-texture"):
        with pytest.raises(MediaError, match="bad.jpg"):
            create_encoder(name).encode([str(bad)])


def test_yamnet_front_end_makes_patches_every_480_ms():
    one_second = np.zeros(16_000, np.float32)
    assert yamnet_patches(one_second).shape == (1, 1, 96, 64)  # short input is padded to one patch
    five = np.random.default_rng(0).normal(size=5 * 16_000).astype(np.float32)
    # 498 frames of 10 ms → patches start at 0, 48, …, 384 (96 frames each)
    assert yamnet_patches(five).shape == (9, 1, 96, 64)


def test_yamnet_front_end_puts_a_tone_in_its_mel_band():
    t = np.arange(2 * 16_000) / 16_000
    patch = yamnet_patches(np.sin(2 * np.pi * 1000 * t).astype(np.float32))[0, 0]  # (96 frames, 64 bands)
    mel = np.linspace(2595 * np.log10(1 + 125 / 700), 2595 * np.log10(1 + 7500 / 700), 66)
    centres = 700 * (10 ** (mel[1:-1] / 2595) - 1)  # HTK band centres
    assert abs(int(patch.mean(axis=0).argmax()) - int(np.abs(centres - 1000).argmin())) <= 1


def test_yamnet_resample_quality_enters_the_cache_key(tmp_path: Path):
    quick, high = create_encoder("yamnet"), create_encoder("yamnet", resample_quality="HQ")
    assert quick.config.resample_quality == "QQ" and quick.key != high.key
    wav = tone(tmp_path / "a.wav", 440, sr=22_050)  # resampled to 16 kHz by both
    assert _cos(quick.encode([wav])[0], high.encode([wav])[0]) > 0.98


def test_yamnet_tells_tones_from_noise(tmp_path: Path):
    enc = create_encoder("yamnet")
    x = enc.encode([tone(tmp_path / "a.wav", 440), tone(tmp_path / "b.wav", 494),
                    tone(tmp_path / "n.wav", 0, noise=True)])
    assert x.shape == (3, 1024) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert _cos(x[0], x[1]) > _cos(x[0], x[2])


def test_audio_baseline_and_unreadable_audio(tmp_path: Path):
    enc = create_encoder("mfcc-stats")
    x = enc.encode([tone(tmp_path / "a.wav", 440), tone(tmp_path / "n.wav", 0, noise=True)])
    assert x.shape == (2, enc.dim)
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    with pytest.raises(MediaError, match="unreadable audio"):
        enc.encode([str(bad)])


def test_unnormalised_output_keeps_the_raw_scale(tmp_path: Path):
    raw = create_encoder("color-texture", normalize=False).encode([picture(tmp_path / "a.png", 1)])
    assert not np.isclose(np.linalg.norm(raw), 1.0)


def test_categories_is_a_multi_hot_of_the_values_seen_in_enough_items():
    from mosaicrec.encoders import create_encoder

    enc = create_encoder("categories", min_count=2)
    enc.fit(["tag: 1, 5. author: 3", "tag: 5", "tag: 1, 7. author: 3", None])
    assert sorted(enc.columns) == ["author=3", "tag=1", "tag=5"]  # tag=7 is in one item only
    out = enc.encode(["tag: 5, 1. author: 3", "tag: 7", "author: 1"])
    assert (out[0] > 0).sum() == 3 and not out[1].any() and not out[2].any()  # 'author=1' ≠ 'tag=1'
