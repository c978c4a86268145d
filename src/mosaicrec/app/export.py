"""Every user's list, by the serving pipeline's rules, in this process or on Ray workers: both run the one
pipeline on the same snapshot of the store's live state (:mod:`mosaicrec.ranking.export`), so they write
the same rows."""

from __future__ import annotations

from pathlib import Path

from mosaicrec.app.listing import open_pipeline
from mosaicrec.errors import MosaicError
from mosaicrec.ranking.export import ExportSummary, export_lists

#: the largest users file read (one id a line)
MAX_USERS_FILE = 200_000_000


def read_user_ids(path: Path) -> list[str]:
    """User ids, one a line (blank lines skipped)."""
    if not path.exists():
        raise MosaicError(f"--users {path}: no such file")
    if not path.is_file():
        raise MosaicError(f"--users {path}: not a regular file (a file of user ids, one a line)")
    if path.stat().st_size > MAX_USERS_FILE:
        raise MosaicError(f"--users {path}: larger than {MAX_USERS_FILE:,} bytes")
    return [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]


def export(model_dir: Path, output: Path, k: int = 10, *, users: Path | None = None, scenario: str | None = None,
           store: Path | None = None, workers: int = 0, ray_address: str | None = None) -> ExportSummary:
    """Write the top ``k`` of every user (or those of the ``users`` file) to ``output``: a ``.parquet`` or
    ``.csv`` file, or a folder of Parquet parts (always with ``workers``)."""
    ids = read_user_ids(users) if users is not None else None
    with open_pipeline(model_dir, store) as service:
        listing = service.listing()
    return export_lists(listing, output, k, users=ids, scenario=scenario, workers=workers, address=ray_address)
