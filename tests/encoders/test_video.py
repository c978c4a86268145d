"""Video items: decoding both common codec pairs, frame sampling, the encoder's parts, and hostile files
(truncated, lying headers, 16k×16k frames, 100 streams, ten hours, not a video at all) refused or bounded
in a sandboxed process that a hang or a crash cannot take down with it."""

from __future__ import annotations

import re
import struct
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

av = pytest.importorskip("av")

from mosaicrec.encoders import EmbeddingCache, create_encoder, encode_items  # noqa: E402
from mosaicrec.encoders.base import MediaError  # noqa: E402
from mosaicrec.encoders.video_io import Sandbox, VideoLimits, decode_video, sniff, write_video  # noqa: E402


def _scenes(n: int = 72, w: int = 96, h: int = 64, cuts=(30, 50)) -> list[np.ndarray]:
    """A moving bar over three flat colours, cut at the given frames."""
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    out = []
    for i in range(n):
        scene = sum(i >= c for c in cuts)
        img = np.empty((h, w, 3), np.uint8)
        img[:] = colours[scene]
        img[:, (2 * i) % w: (2 * i) % w + 6] = 255
        out.append(img)
    return out


def _tone(freq: float, seconds: float = 3.0, sr: int = 44_100) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    out = {"mp4": write_video(d / "a.mp4", _scenes(), wave=_tone(440)),
           "webm": write_video(d / "a.webm", _scenes(), wave=_tone(440)),
           "silent": write_video(d / "silent.mp4", _scenes())}
    return out


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(VideoLimits(timeout_s=30)) as sb:
        yield sb


@pytest.mark.parametrize("kind,codecs", [("mp4", ("h264", "aac")), ("webm", ("vp9", "opus"))])
def test_both_codec_pairs_decode_frames_and_soundtrack(videos, sandbox, kind, codecs):
    v = sandbox.decode(str(videos[kind]), max_frames=6, size=64)
    assert (v.info["codec"], v.info["audio"]) == codecs
    assert 1 <= len(v.frames) <= 6 and v.frames.dtype == np.uint8 and v.frames.shape[1:] == (64, 96, 3)
    assert np.all(np.diff(v.times) > 0) and v.times[-1] <= 3.0
    assert v.wave is not None and abs(len(v.wave) / 16_000 - 3.0) < 0.1  # mono 16 kHz, the whole 3 s
    spectrum = np.abs(np.fft.rfft(v.wave[:16_000]))
    assert abs(np.argmax(spectrum) - 440) <= 2  # the tone that was written, resampled


def test_sampling_is_bounded_and_finds_the_cuts(videos):
    v = decode_video(str(videos["mp4"]), VideoLimits(), max_frames=4, size=48)
    assert len(v.frames) <= 4
    # the frames right after the two cuts (at 30 and 50 of 24 fps) are among the picks
    for cut in (30 / 24, 50 / 24):
        assert np.min(np.abs(v.times - cut)) < 1e-6, v.times
    # the frames show the scenes' colours in time order
    reds = [int(np.argmax(np.median(f.reshape(-1, 3), axis=0))) for f in v.frames]
    assert reds == sorted(reds)
    quiet = decode_video(str(videos["silent"]), VideoLimits(), max_frames=4)
    assert quiet.wave is None and quiet.info["audio"] is None


def test_the_encoder_gives_the_video_vector_and_its_parts(videos, tmp_path):
    items = pd.DataFrame({"item_id": ["a", "b", "c", "d", "e"], "title": "", "texts": [{}] * 5, "image": None,
                          "audio": None, "attributes": [{}] * 5,
                          "video": [str(videos["mp4"]), str(videos["webm"]), str(videos["silent"]), None,
                                    str(tmp_path / "gone.mp4")]})
    enc = create_encoder("video", frames="color-texture", audio="mfcc-stats", content="both", max_frames=4)
    with EmbeddingCache(tmp_path / "c.duckdb") as cache:
        got = encode_items(items, {"clip": enc}, cache=cache, progress=False)
        again = encode_items(items, {"clip": create_encoder("video", frames="color-texture", audio="mfcc-stats",
                                                            content="both", max_frames=4)},
                             cache=cache, progress=False)
    c = got.content
    assert set(c.modalities) == {"clip", "clip_frames", "clip_sound"}
    assert c.masks["clip"].tolist() == [True, True, True, False, False]
    assert c.masks["clip_sound"].tolist() == [True, True, False, False, False]  # the silent one has no sound
    assert c.features["clip"].shape[1] == enc.dim == 8 * 4 * 4 + 16 + 52
    # the same pictures in H.264 and VP9 look alike; the silent copy has the same frames part
    f = c.features["clip_frames"]
    assert f[0] @ f[1] > 0.95 and f[0] @ f[2] > 0.95
    assert np.allclose(np.linalg.norm(c.features["clip"][:3], axis=1), 1.0, atol=1e-5)
    assert "file not found" in dict(got.reports[0].failures)["e"]
    assert again.reports[0].cached == 3 and again.reports[0].encoded == 0  # by content hash
    np.testing.assert_allclose(again.content.features["clip"], c.features["clip"], atol=1e-6)
    only = encode_items(items.iloc[:1], {"v": create_encoder("video", frames="color-texture", audio=None,
                                                             content="parts")}, progress=False).content
    assert only.modalities == ["v_frames"]


def test_the_encoder_names_image_and_audio_encoders():
    from mosaicrec.errors import ConfigError

    with pytest.raises(ConfigError, match="name an image encoder"):
        create_encoder("video", frames="yamnet")
    with pytest.raises(ConfigError, match="name an audio encoder"):
        create_encoder("video", audio="minilm")


# -- hostile files --------------------------------------------------------------------------------------------
def _refused(sandbox: Sandbox, path: Path, kind: str, seconds: float = 10.0) -> MediaError:
    t0 = time.perf_counter()
    with pytest.raises(MediaError) as err:
        sandbox.decode(str(path))
    assert err.value.kind == kind, str(err.value)
    assert time.perf_counter() - t0 < seconds
    assert str(path.parent) not in str(err.value)  # the file by its name only
    return err.value


def test_a_truncated_file_is_refused(videos, sandbox, tmp_path):
    data = videos["mp4"].read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: gone
    _refused(sandbox, tmp_path / "cut.mp4", "corrupt video")
    webm = videos["webm"].read_bytes()
    (tmp_path / "cut.webm").write_bytes(webm[: len(webm) // 2])
    try:  # a cut WebM still holds its first half: decoded as far as it goes, or refused
        v = sandbox.decode(str(tmp_path / "cut.webm"))
        assert 0 < len(v.frames) and v.times[-1] < 3.0
    except MediaError as e:
        assert e.kind == "corrupt video"


def test_a_header_that_lies_about_the_length_meets_the_decoding_bound(tmp_path, sandbox):
    write_video(tmp_path / "long.mkv", [np.full((48, 64, 3), i, np.uint8) for i in range(240)],
                codecs=("mpeg4", "aac"))
    data = bytearray((tmp_path / "long.mkv").read_bytes())
    at = data.find(b"\x44\x89\x88")  # Matroska Duration, an 8-byte float in ms: 10 s becomes 0.5 s
    assert struct.unpack(">d", data[at + 3:at + 11])[0] == 10_000.0
    data[at + 3:at + 11] = struct.pack(">d", 500.0)
    (tmp_path / "lie.mkv").write_bytes(data)
    v = decode_video(str(tmp_path / "lie.mkv"), VideoLimits(max_decoded_frames=50))
    assert v.info["seconds"] == 0.5 and v.info["decoded_frames"] == 50 and v.info["stopped_early"]
    assert len(sandbox.decode(str(tmp_path / "lie.mkv")).frames) <= 8


def test_16k_frames_are_refused_before_decoding(tmp_path, sandbox):
    with av.open(str(tmp_path / "s.mkv"), "w", format="matroska") as out:
        vs = out.add_stream("mjpeg", rate=1)
        vs.width = vs.height = 256
        vs.pix_fmt = "yuvj420p"
        for _ in range(2):
            frame = av.VideoFrame.from_ndarray(np.full((256, 256, 3), 90, np.uint8), format="rgb24")
            for packet in vs.encode(frame.reformat(format="yuvj420p")):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
    data = bytearray((tmp_path / "s.mkv").read_bytes())
    for tag in (b"\xb0\x82\x01\x00", b"\xba\x82\x01\x00"):  # Matroska PixelWidth / PixelHeight: 256 → 16384
        at = data.find(tag)
        data[at + 2:at + 4] = b"\x40\x00"
    sof = list(re.finditer(rb"\xff\xc0\x00\x11\x08\x01\x00\x01\x00", bytes(data)))
    assert sof
    for m in sof:  # and every JPEG frame's own header
        data[m.start() + 5:m.start() + 9] = b"\x40\x00\x40\x00"
    (tmp_path / "huge.mkv").write_bytes(data)
    err = _refused(sandbox, tmp_path / "huge.mkv", "corrupt video")
    assert "frame size" in str(err)
    # a frame size the header does state, beyond the limits, is named as such
    small = Sandbox(VideoLimits(max_width=32, max_height=32))
    try:
        assert _refused(small, tmp_path / "s.mkv", "video too large").detail.endswith("256×256 frames, more than 32×32")
    finally:
        small.close()


def test_a_hundred_streams_are_refused(tmp_path, sandbox):
    with av.open(str(tmp_path / "many.mkv"), "w", format="matroska") as out:
        vs = out.add_stream("mpeg4", rate=24)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        for _ in range(99):
            out.add_stream("pcm_s16le", rate=8000).layout = "mono"
        for img in _scenes(5, 64, 48):
            for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
    assert "100, at most 16" in str(_refused(sandbox, tmp_path / "many.mkv", "too many streams"))


def ten_hours(path: Path) -> Path:
    """A silent ten-hour video in a few hundred bytes: two black frames, 36,000 s apart."""
    with av.open(str(path), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=1)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        for pts in (0, 36_000):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1)
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
    return path


def test_a_ten_hour_silent_video_is_refused_from_its_header(tmp_path, sandbox):
    ten_hours(tmp_path / "ten.mp4")
    assert "36,001 s" in str(_refused(sandbox, tmp_path / "ten.mp4", "video too long", seconds=5))
    # allowed, it decodes its keyframes only and returns at once
    v = decode_video(str(tmp_path / "ten.mp4"), VideoLimits(max_seconds=100_000))
    assert v.wave is None and v.info["decoded_frames"] <= 2


def test_files_that_are_not_videos_are_refused(tmp_path, sandbox, videos):
    (tmp_path / "notes.mp4").write_text("just some text, named like a video")
    _refused(sandbox, tmp_path / "notes.mp4", "not a video")
    import soundfile as sf
    sf.write(tmp_path / "song.wav", _tone(300, 1.0), 44_100)
    (tmp_path / "song.webm").write_bytes((tmp_path / "song.wav").read_bytes())
    _refused(sandbox, tmp_path / "song.webm", "not a video")
    # an MP4 holding sound only is a container of the right kind with no picture
    with av.open(str(tmp_path / "sound.mp4"), "w", format="mp4") as out:
        a = out.add_stream("aac", rate=44_100)
        a.layout = "mono"
        frame = av.AudioFrame.from_ndarray(_tone(300, 0.05)[None, :1024].copy(), format="flt", layout="mono")
        frame.sample_rate, frame.pts = 44_100, 0
        for f in av.AudioResampler(format="fltp", layout="mono", rate=44_100).resample(frame):
            for packet in a.encode(f):
                out.mux(packet)
        for packet in a.encode():
            out.mux(packet)
    _refused(sandbox, tmp_path / "sound.mp4", "no video stream")
    assert sniff(videos["mp4"].read_bytes()[:16]) == "mp4" and sniff(b"ID3\x04" + bytes(12)) is None


def test_a_hang_or_a_crash_costs_the_file_not_the_caller(videos, tmp_path):
    with Sandbox(VideoLimits(timeout_s=1e-3)) as hasty:
        with pytest.raises(MediaError, match="timed out"):
            hasty.decode(str(videos["mp4"]))
    with Sandbox(VideoLimits()) as sb:
        sb.decode(str(videos["mp4"]))
        child = sb._local.proc
        child.kill()  # the decoder dies between calls: the next call starts a new one
        child.wait()
        assert len(sb.decode(str(videos["webm"])).frames)
        # a decoding process that cannot get the memory it needs fails its file, and the caller goes on
    with Sandbox(VideoLimits(memory_mb=256)) as starved:
        with pytest.raises(MediaError) as err:
            starved.decode(str(videos["mp4"]))
        assert err.value.kind in ("video decoder unavailable", "video decoder crashed", "video too large")
