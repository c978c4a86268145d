"""Where the media of items added through the API may come from.

A client never names an arbitrary server path. Media is either

* **uploaded** (multipart, at most ``max_bytes``): saved under ``<media root>/uploads/`` by content hash, or
* a **path inside the media root** the server was started with: resolved (symlinks followed), refused if it
  leaves the root (``..``, an absolute path elsewhere, a symlink pointing out), if it is not a regular file
  (FIFOs, devices, folders), or if it is larger than ``max_bytes`` (checked with ``stat`` before a byte is
  read).

URLs are refused: the server fetches nothing. The other way, the service **serves** an item's stored media
(``GET /items/{id}/media/{kind}``, the web page's posters and clips) only when its real path lies inside the
media root, is a regular file within the size limit, and has a known image, audio or video suffix
(:meth:`MediaPolicy.servable`): a catalog loaded from elsewhere is not served unless the root holds it.

An **upload** is kept only if its bytes decode as what its field says (an image Pillow opens and verifies,
audio libsndfile opens and reads a block of), whatever encoders the server runs; it is stored under the
suffix of the format found in it, never the client's file name (an ``x.html`` that is a JPEG is kept as
``.jpg``; an ``x.mp3`` that is a zip file is refused). A video upload must be an MP4/MOV, WebM/Matroska,
AVI or Ogg file within the video limits whose first frame decodes, checked in the decoding sandbox
(:mod:`mosaicrec.encoders.video_io`) so a hostile file cannot hang or crash the server; videos have
their own, larger, size limit.

Every refusal is a :class:`MediaRejected` (the API answers 4xx) whose message names the client's own
reference and the rule, never anything about other server files (:meth:`MediaPolicy.scrub` takes the
server's paths out of a decoder's message).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
from pathlib import Path

from mosaicrec.encoders.base import MediaError
from mosaicrec.encoders.video_io import VIDEO_TYPES, Sandbox, VideoLimits, sniff
from mosaicrec.errors import MosaicError


class MediaRejected(MosaicError):
    """New item content that cannot be accepted or encoded (the API answers 422)."""


class MediaTooLarge(MediaRejected):
    """Media over the size limit (the API answers 413)."""


_PATH = re.compile(r"(?:/[^/\s'\"<>:]+)+/([^/\s'\"<>:]+)")
#: formats an upload may be, as Pillow and libsndfile name them, and the suffix it is stored under
UPLOAD_FORMATS = {
    "image": {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"},
    "audio": {"MP3": ".mp3", "WAV": ".wav", "OGG": ".ogg", "FLAC": ".flac"},
    "video": {"mp4": ".mp4", "matroska": ".mkv", "webm": ".webm", "avi": ".avi", "ogg": ".ogv"},
}
#: the only types media is served as (with ``nosniff``): never HTML or SVG, which a browser would run
SERVED_TYPES = {
    "image": {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp",
              ".gif": "image/gif", ".bmp": "image/bmp"},
    "audio": {".mp3": "audio/mpeg", ".wav": "audio/wav", ".ogg": "audio/ogg", ".oga": "audio/ogg",
              ".flac": "audio/flac", ".m4a": "audio/mp4", ".opus": "audio/ogg"},
    "video": VIDEO_TYPES,
}


class MediaPolicy:
    """The media root and size limit that client-given media references are checked against."""

    def __init__(self, root: str | Path | None, max_bytes: int = 25_000_000,
                 read_roots: tuple[str | Path, ...] = (), max_video_bytes: int = 200_000_000,
                 video_limits: VideoLimits | None = None) -> None:
        """``root`` keeps uploads and holds media paths; ``read_roots`` are further folders whose files may
        be referenced and served but never written (a dataset's own posters, on a read-only disk). Videos
        may be up to ``max_video_bytes`` and within ``video_limits`` (duration, frame size, streams)."""
        self.root = Path(os.path.realpath(root)) if root is not None else None
        self.roots = ([self.root] if self.root is not None else []) + [Path(os.path.realpath(r)) for r in read_roots]
        self.max_bytes = max_bytes
        self.max_video_bytes = max_video_bytes
        self.video_limits = (video_limits or VideoLimits()).model_copy(update={"max_bytes": max_video_bytes,
                                                                              "timeout_s": 30.0})
        self._sandbox: Sandbox | None = None

    def limit(self, kind: str) -> int:
        """The size limit of one kind of media."""
        return self.max_video_bytes if kind == "video" else self.max_bytes

    @property
    def sandbox(self) -> Sandbox:
        """The decoding sandbox that checks videos (started on first use)."""
        if self._sandbox is None:
            self._sandbox = Sandbox(self.video_limits)
        return self._sandbox

    def video_frame(self, path: str | Path) -> bytes:
        """A video's first frame as JPEG bytes (the card image), decoded in the sandbox."""
        from PIL import Image

        try:
            _, frame = self.sandbox.probe(str(path))
        except MediaError as e:
            raise MediaRejected(self.scrub(str(e))) from None
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, "JPEG", quality=85)
        return buf.getvalue()

    def check_video(self, path: str | Path, field: str = "video") -> str:
        """The container a video file is, after its header meets the limits and its first frame decodes
        (in the sandbox); else :class:`MediaRejected` naming the rule, never a server path."""
        with open(path, "rb") as f:
            fmt = sniff(f.read(16))
        if fmt is None:
            raise MediaRejected(f"{field}: the upload is not a video file of a known container; a video must "
                                "be MP4/MOV, WebM/Matroska, AVI or Ogg")
        try:
            info, _ = self.sandbox.probe(str(path), 32)
        except MediaError as e:
            raise MediaRejected(f"{field}: {e.kind}" + (f" ({self.scrub(_no_name(e.detail))})" if e.detail else "")
                                ) from None
        return "webm" if fmt == "matroska" and info.get("codec") in ("vp8", "vp9", "av1") else fmt
    def inside(self, real: Path) -> bool:
        """Whether a resolved path lies in one of the media roots."""
        return any(real == r or r in real.parents for r in self.roots)

    def resolve(self, ref: str, field: str) -> str:
        """The real path of a client's media reference, after every check (see the module docstring)."""
        if not self.roots:
            raise MediaRejected(f"{field} {ref!r}: this server accepts no media paths (it was started without "
                                "--media-root); upload the file instead (POST /items/upload)")
        if "://" in ref or ref.startswith("file:"):
            raise MediaRejected(f"{field} {ref!r}: URLs are not fetched; upload the file or give a path inside "
                                "the media root")
        if "\x00" in ref or ".." in Path(ref).parts:
            raise MediaRejected(f"{field} {ref!r}: must be a path inside the media root (no '..')")
        candidate = Path(ref) if Path(ref).is_absolute() else self.roots[0] / ref
        real = Path(os.path.realpath(candidate))
        if not self.inside(real):
            raise MediaRejected(f"{field} {ref!r}: must be a path inside the media root")
        try:
            st = os.stat(real)  # stat never opens: a FIFO cannot block here, /dev/zero is never read
        except OSError:
            raise MediaRejected(f"{field} {ref!r}: no such file in the media root") from None
        if not stat.S_ISREG(st.st_mode):
            raise MediaRejected(f"{field} {ref!r}: not a regular file")
        if st.st_size > self.limit(field):
            raise MediaTooLarge(f"{field} {ref!r}: {st.st_size:,} bytes, more than the limit of "
                                f"{self.limit(field):,}")
        if field == "video":
            self.check_video(real, f"{field} {ref!r}")
        return str(real)

    def scrub(self, message: str) -> str:
        """A message without the server's paths: the media roots cut off (``uploads/<sha>.mp3`` is left)
        and any other absolute path cut to its file name."""
        for root in self.roots:
            message = message.replace(str(root) + os.sep, "").replace(str(root), "<media root>")
        return _PATH.sub(lambda m: m.group(1), message)

    def servable(self, stored: str | None, kind: str) -> tuple[Path, str] | None:
        """The real path and media type of an item's stored ``kind`` (image or audio) reference when the
        service may serve it (see the module docstring); ``None`` when it may not or there is none."""
        if not self.roots or not stored or kind not in SERVED_TYPES or "\x00" in stored:
            return None
        real = Path(os.path.realpath(stored))
        if not self.inside(real) or real in self.roots:
            return None
        media_type = SERVED_TYPES[kind].get(real.suffix.lower())
        try:
            st = os.stat(real)
        except OSError:
            return None
        if media_type is None or not stat.S_ISREG(st.st_mode) or st.st_size > self.limit(kind):
            return None
        return real, media_type

    def save_upload(self, data: bytes, filename: str | None, field: str) -> tuple[str, bool]:
        """Store uploaded bytes under ``uploads/`` by content hash; returns (path, whether it is new)."""
        if self.root is None:
            raise MediaRejected("this server has no media root to keep uploads in (start it with --media-root)")
        if len(data) > self.limit(field):
            raise MediaTooLarge(f"{field}: {len(data):,} bytes, more than the limit of {self.limit(field):,}")
        if not data:
            raise MediaRejected(f"{field}: the uploaded file is empty")
        folder = self.root / "uploads"
        folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(data).hexdigest()
        if field == "video":  # checked from a file, by the sandbox, before it gets its name
            tmp = folder / f"{digest}.part"
            tmp.write_bytes(data)
            try:
                suffix = UPLOAD_FORMATS["video"][self.check_video(tmp)]
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            path = folder / (digest + suffix)
            if path.exists():
                tmp.unlink()
                return str(path), False
            tmp.replace(path)
            return str(path), True
        suffix = upload_suffix(data, field)
        path = folder / (digest + suffix)
        if path.exists():
            return str(path), False
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
        return str(path), True


def _no_name(detail: str) -> str:
    """A sandbox's detail without the file name it starts with (an upload's name is a server-side hash)."""
    head, sep, rest = detail.partition(": ")
    return rest if sep and "." in head and " " not in head else detail


def upload_suffix(data: bytes, field: str) -> str:
    """The suffix uploaded bytes are kept under: that of the format they decode as, which must be one of
    ``UPLOAD_FORMATS[field]``; else :class:`MediaRejected` naming the field and what was found."""
    allowed = UPLOAD_FORMATS.get(field)
    if allowed is None or field == "video":
        raise MediaRejected(f"{field}: uploads are image or audio (videos go through MediaPolicy.save_upload)")
    readers = (_image_format, _audio_format) if field == "image" else (_audio_format, _image_format)
    found = readers[0](data)
    if found not in allowed:
        other = found or readers[1](data)
        what = f"a {other} file" if other else "not a file of a known format (or a damaged one)"
        raise MediaRejected(f"{field}: the upload is {what}; an {field} upload must be "
                            f"{', '.join(allowed)}")
    return allowed[found]


def _image_format(data: bytes) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format
            img.verify()  # the whole structure, without decoding every pixel
        return fmt
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None


def _audio_format(data: bytes) -> str | None:
    import soundfile

    try:
        with soundfile.SoundFile(io.BytesIO(data)) as f:
            if f.frames == 0 or len(f.read(1024)) == 0:
                return None
            return f.format
    except (RuntimeError, TypeError, ValueError, soundfile.LibsndfileError):
        return None
