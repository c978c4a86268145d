"""Where the media of items added through the API may come from.

A client never names an arbitrary server path. Media is either

* **uploaded** (multipart, at most ``max_bytes``): saved under ``<media root>/uploads/`` by content hash, or
* a **path inside the media root** the server was started with: resolved (symlinks followed), refused if it
  leaves the root (``..``, an absolute path elsewhere, a symlink pointing out), if it is not a regular file
  (FIFOs, devices, folders), or if it is larger than ``max_bytes`` (checked with ``stat`` before a byte is
  read).

URLs are refused: the server fetches nothing. Every refusal is a :class:`MediaRejected` (the API answers
4xx) whose message names the client's own reference and the rule, never anything about other server files.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path

from mosaicrec.errors import MosaicError


class MediaRejected(MosaicError):
    """New item content that cannot be accepted or encoded (the API answers 422)."""


class MediaTooLarge(MediaRejected):
    """Media over the size limit (the API answers 413)."""


_SAFE_SUFFIX = re.compile(r"^\.[a-z0-9]{1,5}$")


class MediaPolicy:
    """The media root and size limit that client-given media references are checked against."""

    def __init__(self, root: str | Path | None, max_bytes: int = 25_000_000) -> None:
        self.root = Path(os.path.realpath(root)) if root is not None else None
        self.max_bytes = max_bytes

    def resolve(self, ref: str, field: str) -> str:
        """The real path of a client's media reference, after every check (see the module docstring)."""
        if self.root is None:
            raise MediaRejected(f"{field} {ref!r}: this server accepts no media paths (it was started without "
                                "--media-root); upload the file instead (POST /items/upload)")
        if "://" in ref or ref.startswith("file:"):
            raise MediaRejected(f"{field} {ref!r}: URLs are not fetched; upload the file or give a path inside "
                                "the media root")
        if "\x00" in ref or ".." in Path(ref).parts:
            raise MediaRejected(f"{field} {ref!r}: must be a path inside the media root (no '..')")
        candidate = Path(ref) if Path(ref).is_absolute() else self.root / ref
        real = Path(os.path.realpath(candidate))
        if real != self.root and self.root not in real.parents:
            raise MediaRejected(f"{field} {ref!r}: must be a path inside the media root")
        try:
            st = os.stat(real)  # stat never opens: a FIFO cannot block here, /dev/zero is never read
        except OSError:
            raise MediaRejected(f"{field} {ref!r}: no such file in the media root") from None
        if not stat.S_ISREG(st.st_mode):
            raise MediaRejected(f"{field} {ref!r}: not a regular file")
        if st.st_size > self.max_bytes:
            raise MediaTooLarge(f"{field} {ref!r}: {st.st_size:,} bytes, more than the limit of {self.max_bytes:,}")
        return str(real)

    def save_upload(self, data: bytes, filename: str | None, field: str) -> tuple[str, bool]:
        """Store uploaded bytes under ``uploads/`` by content hash; returns (path, whether it is new)."""
        if self.root is None:
            raise MediaRejected("this server has no media root to keep uploads in (start it with --media-root)")
        if len(data) > self.max_bytes:
            raise MediaTooLarge(f"{field}: {len(data):,} bytes, more than the limit of {self.max_bytes:,}")
        if not data:
            raise MediaRejected(f"{field}: the uploaded file is empty")
        suffix = Path(filename or "").suffix.lower()
        suffix = suffix if _SAFE_SUFFIX.match(suffix) else ""
        folder = self.root / "uploads"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / (hashlib.sha256(data).hexdigest() + suffix)
        if path.exists():
            return str(path), False
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
        return str(path), True
