"""The embedding cache: vectors keyed by (encoder, version, content hash) in a DuckDB file.

It lives in the store's directory (``embeddings.duckdb`` beside ``store.duckdb``), so a catalog's vectors
travel with its data. Content is keyed by what it is, not by item id: an unchanged file or text is never
encoded twice, two items with the same poster share one vector, and an edited description re-encodes.
Failures are cached too (a corrupt file stays corrupt until its bytes change), with their reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from mosaicrec.errors import StoreError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    encoder VARCHAR, content_hash VARCHAR, dim INTEGER, vector BLOB,
    created TIMESTAMP DEFAULT current_timestamp, PRIMARY KEY (encoder, content_hash));
CREATE TABLE IF NOT EXISTS failures (
    encoder VARCHAR, content_hash VARCHAR, reason VARCHAR,
    created TIMESTAMP DEFAULT current_timestamp, PRIMARY KEY (encoder, content_hash));
"""


def text_hash(text: str) -> str:
    return hashlib.sha256(b"text\0" + text.encode("utf-8")).hexdigest()


def file_hash(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (raises OSError when it cannot be read)."""
    digest = hashlib.sha256(b"file\0")
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def default_cache_path(store_path: str | Path | None = None) -> Path:
    """``embeddings.duckdb`` in the store's folder."""
    from mosaicrec.data.store import default_store_path

    return Path(store_path or default_store_path()).parent / "embeddings.duckdb"


class EmbeddingCache:
    """Vectors and failures by ``(encoder key, content hash)``. Use as a context manager."""

    def __init__(self, path: str | Path | None = None, read_only: bool = False) -> None:
        self.path = Path(path) if path else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.Error as e:
            raise StoreError(f"cannot open the embedding cache {self.path}: {e}") from e
        if not read_only:
            self.con.execute(_SCHEMA)

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    def get(self, encoder: str, hashes: Iterable[str]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """Cached vectors and cached failure reasons for these hashes."""
        keys = pd.DataFrame({"content_hash": pd.Series(sorted(set(hashes)), dtype=object)})
        if keys.empty:
            return {}, {}
        self.con.register("wanted", keys)
        try:
            rows = self.con.execute(
                "SELECT e.content_hash, e.dim, e.vector FROM embeddings e JOIN wanted w USING (content_hash) "
                "WHERE e.encoder = ?", [encoder]).fetchall()
            fails = self.con.execute(
                "SELECT f.content_hash, f.reason FROM failures f JOIN wanted w USING (content_hash) "
                "WHERE f.encoder = ?", [encoder]).fetchall()
        finally:
            self.con.unregister("wanted")
        vectors = {h: np.frombuffer(blob, dtype=np.float32, count=dim) for h, dim, blob in rows}
        return vectors, dict(fails)

    def put(self, encoder: str, vectors: dict[str, np.ndarray], failures: dict[str, str] | None = None) -> None:
        """Store vectors (and failures) in one transaction; a re-encoded hash replaces its old entry."""
        failures = failures or {}
        rows = pd.DataFrame({
            "encoder": pd.Series([encoder] * len(vectors), dtype=object),
            "content_hash": pd.Series(list(vectors), dtype=object),
            "dim": pd.Series([int(v.shape[0]) for v in vectors.values()], dtype="int32"),
            "vector": pd.Series([np.ascontiguousarray(v, np.float32).tobytes() for v in vectors.values()],
                                dtype=object),
        })
        fails = pd.DataFrame({"encoder": pd.Series([encoder] * len(failures), dtype=object),
                              "content_hash": pd.Series(list(failures), dtype=object),
                              "reason": pd.Series(list(failures.values()), dtype=object)})
        self.con.execute("BEGIN")
        try:
            if len(rows):
                self.con.register("new_rows", rows)
                self.con.execute("INSERT OR REPLACE INTO embeddings (encoder, content_hash, dim, vector) "
                                 "SELECT encoder, content_hash, dim, vector FROM new_rows")
                self.con.execute("DELETE FROM failures WHERE encoder = ? AND content_hash IN "
                                 "(SELECT content_hash FROM new_rows)", [encoder])
            if len(fails):
                self.con.register("new_fails", fails)
                self.con.execute("INSERT OR REPLACE INTO failures (encoder, content_hash, reason) "
                                 "SELECT encoder, content_hash, reason FROM new_fails")
            self.con.execute("COMMIT")
        except duckdb.Error as e:
            self.con.execute("ROLLBACK")
            raise StoreError(f"cannot write to the embedding cache {self.path}: {e}") from e
        finally:
            for view in ("new_rows", "new_fails"):
                try:
                    self.con.unregister(view)
                except duckdb.Error:
                    pass

    def counts(self) -> dict[str, int]:
        """Vectors per encoder key."""
        return dict(self.con.execute("SELECT encoder, count(*) FROM embeddings GROUP BY encoder "
                                     "ORDER BY encoder").fetchall())
