"""Reading videos safely: limits checked from the container's header, and decoding in a child process.

A video file is the most hostile input the product takes: a container can declare 16k×16k frames, hundreds
of streams or ten hours, lie about its length, or drive a decoder into a crash. So:

* only four container formats are opened, chosen from the file's first bytes, never from its suffix or by
  FFmpeg's guessing (which would also open playlists that read other files): MP4/MOV, Matroska/WebM,
  AVI and Ogg; FFmpeg may read the local file only (``protocol_whitelist=file``);
* :class:`VideoLimits` (bytes, duration, resolution, streams) are checked from the header before a frame
  is decoded, and the frames and seconds actually decoded are bounded too (a header that lies about its
  length meets the same bound);
* decoding runs in a spawned child process with an address-space limit and a deadline
  (:class:`Sandbox`): a hang or a crash costs that file (:class:`MediaError`), never the caller.

Frames are sampled with a bounded count: half spread evenly over the video, half at the largest scene
changes (the mean absolute difference of consecutive 32×18 grey thumbnails). Long videos decode their
keyframes only. The soundtrack is read as mono 16 kHz float32, up to ``audio_seconds``.
"""

from __future__ import annotations

import heapq
import itertools
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mosaicrec.encoders.base import MediaError

#: container → the FFmpeg demuxer that reads it; nothing else is opened
FORMATS = {"mp4": "mp4", "matroska": "matroska", "avi": "avi", "ogg": "ogg"}
#: suffix → media type, for serving files and accepting uploads
VIDEO_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
               ".mkv": "video/x-matroska", ".avi": "video/x-msvideo", ".ogv": "video/ogg"}
AUDIO_RATE = 16_000


class VideoLimits(BaseModel):
    """What a video may be. Checked from the header first; the decoded frames and seconds are bounded too."""

    model_config = ConfigDict(extra="forbid")

    max_bytes: int = Field(2 * 1024**3, ge=1, description="file size")
    max_seconds: float = Field(4 * 3600.0, gt=0, description="declared duration")
    max_width: int = Field(7680, ge=16, description="frame width (8K)")
    max_height: int = Field(4320, ge=16, description="frame height (8K)")
    max_streams: int = Field(16, ge=1, description="streams in the container")
    max_decoded_frames: int = Field(1500, ge=1, description="frames decoded at most (longer videos decode "
                                    "keyframes only, and stop here whatever the header says)")
    timeout_s: float = Field(120.0, gt=0, description="wall-clock limit of one file's decoding")
    memory_mb: int = Field(3072, ge=256, description="address-space limit of the decoding process")


@dataclass
class DecodedVideo:
    """A video's sampled frames (``(n, h, w, 3)`` uint8, in time order), their times in seconds, the
    soundtrack (mono float32 at 16 kHz, ``None`` without one) and what the header said."""

    frames: np.ndarray
    times: np.ndarray
    wave: np.ndarray | None
    info: dict[str, Any]


def sniff(head: bytes) -> str | None:
    """The container a file's first bytes show (a key of :data:`FORMATS`), or ``None``."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "mp4"
    if len(head) >= 8 and head[4:8] in (b"moov", b"mdat", b"wide", b"free"):
        return "mp4"  # QuickTime files without an ftyp box
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[:4] == b"OggS":
        return "ogg"
    return None


# -- in the child ---------------------------------------------------------------------------------------------
def _open(path: str, limits: VideoLimits) -> Any:
    import av

    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(16)
    except FileNotFoundError as e:
        raise MediaError("file not found", p.name) from e
    except OSError as e:
        raise MediaError("unreadable file", f"{p.name}: {e.strerror or e}") from e
    if size > limits.max_bytes:
        raise MediaError("video too large", f"{p.name}: {size:,} bytes, more than {limits.max_bytes:,}")
    fmt = sniff(head)
    if fmt is None:
        raise MediaError("not a video", f"{p.name}: not an MP4, WebM/Matroska, AVI or Ogg file")
    try:
        return av.open(str(p), format=FORMATS[fmt], options={"protocol_whitelist": "file"},
                       metadata_errors="ignore")
    except av.FFmpegError as e:
        raise MediaError("corrupt video", f"{p.name}: {e.strerror or type(e).__name__}") from e


def _header(container: Any, name: str, limits: VideoLimits) -> dict[str, Any]:
    """The header's facts, refused where they break a limit."""
    if len(container.streams) > limits.max_streams:
        raise MediaError("too many streams", f"{name}: {len(container.streams)}, at most {limits.max_streams}")
    if not container.streams.video:
        raise MediaError("no video stream", name)
    vs = container.streams.video[0]
    w, h = vs.codec_context.width, vs.codec_context.height
    if not w or not h:
        raise MediaError("corrupt video", f"{name}: the header gives no frame size")
    if w > limits.max_width or h > limits.max_height:
        raise MediaError("video too large", f"{name}: {w}×{h} frames, more than {limits.max_width}×"
                         f"{limits.max_height}")
    seconds = None
    if container.duration is not None and container.duration > 0:
        seconds = container.duration / 1_000_000
    elif vs.duration and vs.time_base:
        seconds = float(vs.duration * vs.time_base)
    if seconds is not None and seconds > limits.max_seconds:
        raise MediaError("video too long", f"{name}: {seconds:,.0f} s, more than {limits.max_seconds:,.0f}")
    rate = float(vs.average_rate or vs.guessed_rate or 25)
    audio = container.streams.audio[0] if container.streams.audio else None
    return {"width": w, "height": h, "seconds": seconds, "fps": rate, "codec": vs.codec_context.name,
            "format": container.format.name, "audio": audio.codec_context.name if audio is not None else None,
            "streams": len(container.streams)}


class _Sampler:
    """Keeps a bounded set of frames while decoding: an evenly thinned pool (every frame, then every
    second one when full, and so on) and the frames after the largest scene changes."""

    def __init__(self, max_frames: int, size: int) -> None:
        self.n_scene = max_frames // 2
        self.n_even = max_frames - self.n_scene
        self.pool_cap = 4 * max(self.n_even, 1)
        self.size, self.stride, self.seen = size, 1, 0
        self.pool: list[tuple[float, np.ndarray]] = []
        self.scenes: list[tuple[float, int, float, np.ndarray]] = []  # min-heap on the change score
        self.prev: np.ndarray | None = None

    def _rgb(self, frame: Any) -> np.ndarray:
        w, h = frame.width, frame.height
        scale = self.size / min(w, h)
        tw, th = max(2, round(w * scale)) // 2 * 2, max(2, round(h * scale)) // 2 * 2
        return frame.to_ndarray(width=tw, height=th, format="rgb24")

    def add(self, frame: Any, t: float) -> None:
        thumb = frame.to_ndarray(width=32, height=18, format="gray").astype(np.float32)
        change = float(np.abs(thumb - self.prev).mean()) / 255.0 if self.prev is not None else 0.0
        self.prev = thumb
        if self.n_scene and change > 0.05 and (len(self.scenes) < self.n_scene or change > self.scenes[0][0]):
            item = (change, self.seen, t, self._rgb(frame))
            if len(self.scenes) < self.n_scene:
                heapq.heappush(self.scenes, item)
            else:
                heapq.heapreplace(self.scenes, item)
        if self.seen % self.stride == 0:
            self.pool.append((t, self._rgb(frame)))
            if len(self.pool) >= self.pool_cap:  # thin to every second frame
                self.pool, self.stride = self.pool[::2], self.stride * 2
        self.seen += 1

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        chosen: dict[float, np.ndarray] = {t: im for _, _, t, im in self.scenes}
        if self.pool:
            want = self.n_even + max(0, self.n_scene - len(self.scenes))
            picks = np.unique(np.linspace(0, len(self.pool) - 1, min(want, len(self.pool))).round().astype(int))
            for i in picks:
                chosen.setdefault(self.pool[i][0], self.pool[i][1])
        times = sorted(chosen)
        shapes = {chosen[t].shape for t in times}
        if len(shapes) > 1:  # a stream that changes size mid-way: keep the frames of the first size
            first = chosen[times[0]].shape
            times = [t for t in times if chosen[t].shape == first]
        return np.stack([chosen[t] for t in times]), np.array(times, np.float64)


def _frames(container: Any, info: dict[str, Any], limits: VideoLimits, max_frames: int, size: int
            ) -> tuple[np.ndarray, np.ndarray]:
    vs = container.streams.video[0]
    vs.codec_context.thread_count = 1
    expected = (info["seconds"] or 0.0) * info["fps"]
    if info["seconds"] is None or expected > limits.max_decoded_frames:
        vs.codec_context.skip_frame = "NONKEY"  # long: keyframes only (decoders that ignore it meet the bound)
        info["keyframes_only"] = True
    sampler = _Sampler(max_frames, size)
    decoded = 0
    for frame in container.decode(vs):
        t = float(frame.time) if frame.time is not None else decoded / info["fps"]
        if decoded >= limits.max_decoded_frames or t > limits.max_seconds:
            info["stopped_early"] = True  # a header that understated the length meets the bound here
            break
        sampler.add(frame, t)
        decoded += 1
    info["decoded_frames"] = decoded
    if not sampler.pool:
        raise MediaError("corrupt video", f"no frame could be decoded ({info['codec']})")
    return sampler.result()


def _soundtrack(path: str, limits: VideoLimits, seconds: float) -> np.ndarray | None:
    import av

    container = _open(path, limits)
    with container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
        chunks, total, cap = [], 0, int(seconds * AUDIO_RATE)
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunk = out.to_ndarray().reshape(-1)
                chunks.append(chunk)
                total += len(chunk)
            if total >= cap:
                break
        if not total:
            return None
        wave = np.concatenate(chunks)[:cap].astype(np.float32, copy=False)
        return wave if np.isfinite(wave).all() else None


def decode_video(path: str, limits: VideoLimits, max_frames: int = 8, size: int = 256,
                 audio_seconds: float | None = 30.0) -> DecodedVideo:
    """Read a video *in this process* (the sandbox calls this; callers want :meth:`Sandbox.decode`)."""
    import av

    name = Path(path).name
    container = _open(path, limits)
    try:
        with container:
            info = _header(container, name, limits)
            frames, times = _frames(container, info, limits, max_frames, size)
    except av.FFmpegError as e:
        raise MediaError("corrupt video", f"{name}: {e.strerror or type(e).__name__}") from e
    wave = None
    if audio_seconds and info["audio"]:
        try:
            wave = _soundtrack(path, limits, audio_seconds)
        except (av.FFmpegError, MediaError) as e:  # a broken soundtrack leaves the pictures usable
            info["audio_error"] = str(getattr(e, "strerror", None) or e)
    return DecodedVideo(frames, times, wave, info)


def probe(path: str, limits: VideoLimits, size: int = 360) -> tuple[dict[str, Any], np.ndarray]:
    """The header's facts (refused where they break a limit) and the first decodable frame, ``(h, w, 3)``
    uint8 with its shorter side ``size`` (the card image), from one opening of the file."""
    name = Path(path).name
    with _open(path, limits) as container:
        info = _header(container, name, limits)
        vs = container.streams.video[0]
        vs.codec_context.skip_frame = "NONKEY"
        for frame in container.decode(vs):
            return info, _Sampler(1, size)._rgb(frame)
    raise MediaError("corrupt video", f"{name}: no frame could be decoded")


#: what the sandbox child may be asked to run
_CALLS = {"decode": decode_video, "probe": probe}


def _send(fd: int, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(struct.pack("<Q", len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def _recv(fd: int, deadline: float | None = None) -> Any:
    (n,) = struct.unpack("<Q", _read_exact(fd, 8, deadline))
    return pickle.loads(_read_exact(fd, n, deadline))


def _child_main() -> None:
    """The sandbox process (``python -m mosaicrec.encoders.video_io``): answer calls read from stdin on
    stdout until stdin closes. The address-space limit turns a decoder's runaway allocation into a
    MemoryError (or a quick death) here instead of the host's OOM killer."""
    import resource

    memory_mb = int(sys.argv[1])
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    import av

    av.logging.set_level(av.logging.PANIC)
    rfd, wfd = sys.stdin.fileno(), os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints cannot corrupt the answers
    _send(wfd, "ready")
    while True:
        try:
            fn, args, kwargs = _recv(rfd)
        except EOFError:
            return
        try:
            answer = (True, _CALLS[fn](*args, **kwargs))
        except MediaError as e:
            answer = (False, (e.kind, e.detail))
        except MemoryError:
            answer = (False, ("video too large", "out of memory decoding it"))
        except Exception as e:  # noqa: BLE001  any decoder error is this file's failure, not the caller's
            answer = (False, ("corrupt video", f"{type(e).__name__}: {e}"))
        _send(wfd, answer)


class Sandbox:
    """A decoding child process with a memory limit and a deadline per file, restarted after a crash or a
    missed deadline. One per thread (a call holds its process until it answers); started on first use.
    The child is a fresh interpreter (``python -m``), not a fork: nothing of the caller's threads or
    state enters it, and the caller's main module is never re-run."""

    def __init__(self, limits: VideoLimits | None = None) -> None:
        self.limits = limits or VideoLimits()
        self._local = threading.local()
        self._all: list[subprocess.Popen] = []
        self._lock = threading.Lock()

    def _proc(self) -> subprocess.Popen:
        proc = getattr(self._local, "proc", None)
        if proc is None or proc.poll() is not None:
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            proc = subprocess.Popen([sys.executable, "-m", "mosaicrec.encoders.video_io", str(self.limits.memory_mb)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                    env=env, start_new_session=True)
            self._local.proc = proc
            with self._lock:
                self._all.append(proc)
            try:  # the start (importing av, about a second) is not charged to any file
                if _recv(proc.stdout.fileno(), time.monotonic() + 60.0) != "ready":
                    raise EOFError
            except (EOFError, TimeoutError):
                self._kill()
                raise MediaError("video decoder unavailable", "the decoding process did not start") from None
        return proc

    def _kill(self) -> None:
        proc = getattr(self._local, "proc", None)
        if proc is not None:
            proc.kill()
            proc.wait(5)
            for f in (proc.stdin, proc.stdout):
                f.close()
            self._local.proc = None

    def call(self, fn: str, path: str, *args: Any, **kwargs: Any) -> Any:
        """Run one of the decoding calls on ``path`` in the child; a refusal, crash or timeout is a
        :class:`MediaError` naming the file by its name only."""
        name = Path(path).name
        proc = self._proc()
        try:
            _send(proc.stdin.fileno(), (fn, (str(path), self.limits, *args), kwargs))
            ok, payload = _recv(proc.stdout.fileno(), time.monotonic() + self.limits.timeout_s)
        except TimeoutError:
            self._kill()
            raise MediaError("video decoding timed out", f"{name}: more than {self.limits.timeout_s:g} s") from None
        except (EOFError, OSError):
            code = proc.poll()
            self._kill()
            raise MediaError("video decoder crashed", f"{name}: the decoding process ended"
                             + (f" ({code})" if code is not None else "")) from None
        if not ok:
            raise MediaError(*payload)
        return payload

    def decode(self, path: str, max_frames: int = 8, size: int = 256, audio_seconds: float | None = 30.0
               ) -> DecodedVideo:
        return self.call("decode", path, max_frames, size, audio_seconds)

    def probe(self, path: str, size: int = 360) -> tuple[dict[str, Any], np.ndarray]:
        """The header's facts and the first frame (see :func:`probe`), or a refusal."""
        return self.call("probe", path, size)

    def close(self) -> None:
        with self._lock:
            for p in self._all:
                if p.poll() is None:
                    p.kill()
                    p.wait(5)
                for f in (p.stdin, p.stdout):
                    if f is not None and not f.closed:
                        f.close()
            self._all.clear()
        self._local = threading.local()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_FAST = {"libvpx-vp9": {"deadline": "realtime", "cpu-used": "8"}, "libx264": {"preset": "veryfast"}}


def write_video(path: str | Path, frames: Any, fps: float = 24.0, wave: np.ndarray | None = None,
                sample_rate: int = 44_100, codecs: tuple[str, str] | None = None) -> Path:
    """Write frames (an iterable of ``(h, w, 3)`` uint8 arrays of one even size) and an optional mono
    soundtrack to a video file: H.264 + AAC for ``.mp4``/``.mkv``, VP9 + Opus for ``.webm`` unless
    ``codecs`` (video, audio) says otherwise. What the tests and the video benchmark build videos with."""
    import av
    from fractions import Fraction

    path = Path(path)
    fmt = "webm" if path.suffix == ".webm" else "matroska" if path.suffix == ".mkv" else "mp4"
    codecs = codecs or (("libvpx-vp9", "libopus") if fmt == "webm" else ("libx264", "aac"))
    frames = iter(frames)
    first = next(frames)
    with av.open(str(path), "w", format=fmt) as out:
        vs = out.add_stream(codecs[0], rate=Fraction(fps).limit_denominator(1001),
                            options=_FAST.get(codecs[0], {}))  # test and benchmark files: speed over size
        vs.pix_fmt = "yuv420p"
        vs.height, vs.width = first.shape[:2]
        aus = None
        if wave is not None and len(wave):  # every stream is declared before the first packet
            rate = 48_000 if codecs[1] in ("libopus", "opus") else sample_rate
            if rate != sample_rate:
                import soxr
                wave = soxr.resample(np.asarray(wave, np.float32), sample_rate, rate)
            aus = out.add_stream(codecs[1], rate=rate)
            aus.layout = "mono"
        for img in itertools.chain([first], frames):
            for packet in vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        if aus is not None:
            resampler = av.AudioResampler(format=aus.codec_context.format or "fltp", layout="mono", rate=rate)
            step = aus.codec_context.frame_size or 1024
            x = np.asarray(wave, np.float32)
            for s in range(0, len(x), step):
                frame = av.AudioFrame.from_ndarray(x[None, s:s + step].copy(), format="flt", layout="mono")
                frame.sample_rate, frame.pts = rate, s
                for f in resampler.resample(frame):
                    for packet in aus.encode(f):
                        out.mux(packet)
            for packet in aus.encode():
                out.mux(packet)
    return path


if __name__ == "__main__":  # the sandbox child: run under the module's own name so answers unpickle
    from mosaicrec.encoders import video_io

    video_io._child_main()
