"""Approximate maximum-inner-product retrieval with faiss HNSW, exact where the catalog is small.

Scores of factor models are ``u·v_i + b_i``; appending 1 to the query and ``b_i`` to each item turns that
into one inner product, which HNSW (``METRIC_INNER_PRODUCT``) searches directly. Exclusions (seen items,
filters) are honoured *before* the top-k, inside the graph walk (a faiss ID selector), so a filtered
request still returns ``k`` items whenever ``k`` pass; where a filter is narrow the caller scores the
passing items exactly instead, which is then both cheaper and exact.

Building the graph is most of a large server's start (24 s for 100k items here). With a ``cache`` folder
an index is saved there, named by a hash of its rows and build settings, and the next start with the same
rows maps that file (``IO_FLAG_MMAP``: processes on one machine share its pages) instead of building.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

#: index files kept in a cache folder (the newest; older ones are removed when a new one is written)
KEEP_INDEXES = 8


def augment(vectors: np.ndarray, biases: np.ndarray | None = None) -> np.ndarray:
    """``[v_i, b_i]`` rows (float32, contiguous): with a query ``[q, 1]`` one inner product is ``q·v_i + b_i``."""
    out = np.empty((len(vectors), vectors.shape[1] + 1), np.float32)
    out[:, :-1], out[:, -1] = vectors, 0.0 if biases is None else biases
    return out


class InnerProductIndex:
    """HNSW over item vectors (``n × d``) with optional biases."""

    def __init__(self, vectors: np.ndarray, biases: np.ndarray | None = None, m: int = 32,
                 ef_construction: int = 200, ef_search: int = 96, threads: int = 0,
                 cache: str | Path | None = None) -> None:
        """``threads``: OpenMP threads for the build (0: all cores). Searches use one thread: a server
        asks one query at a time, and idle OpenMP workers spin on the cores the requests need. ``cache``:
        a folder to map a saved index from, or to save this one in (see the module)."""
        import faiss

        items = augment(vectors, biases)
        path = _cache_file(Path(cache), items, m, ef_construction) if cache is not None else None
        self.index = _read(path) if path is not None else None
        if self.index is None:
            faiss.omp_set_num_threads(threads or os.cpu_count() or 1)
            self.index = faiss.IndexHNSWFlat(items.shape[1], m, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = ef_construction
            self.index.add(items)  # faiss keeps its own copy
            if path is not None:
                _write(self.index, path)
        faiss.omp_set_num_threads(1)
        self.index.hnsw.efSearch = ef_search
        self.ef_search = ef_search

    def __len__(self) -> int:
        return self.index.ntotal

    def add(self, vectors: np.ndarray, biases: np.ndarray | None = None) -> None:
        """Append items (their indices continue from ``len(self)``)."""
        self.index.add(augment(vectors, biases))

    def search(self, queries: np.ndarray, k: int, allow: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item indices and scores per query row (``-1`` where the index has fewer).

        ``allow`` (a boolean mask over the indexed items) restricts the search to those items inside the
        graph walk, so excluded and filtered items cost no result slots. Under a narrow mask HNSW may find
        fewer than ``k`` (its walk passes through disallowed nodes): score the allowed items exactly then.
        """
        import faiss

        q = np.empty((len(queries), queries.shape[1] + 1), np.float32)
        q[:, :-1], q[:, -1] = queries, 1.0
        params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))
        if allow is not None:
            bits = np.packbits(allow[:self.index.ntotal], bitorder="little")
            params.sel = faiss.IDSelectorBitmap(self.index.ntotal, faiss.swig_ptr(bits))
        scores, ids = self.index.search(q, k, params=params)
        return ids, scores


def _cache_file(folder: Path, items: np.ndarray, m: int, ef_construction: int) -> Path:
    digest = hashlib.blake2b(np.ascontiguousarray(items).view(np.uint8), digest_size=16)
    digest.update(f"{items.shape}:{m}:{ef_construction}".encode())
    return folder / f"hnsw-{digest.hexdigest()}.faiss"


def _read(path: Path):
    """The saved index at ``path``, mapped; ``None`` when there is none or it cannot be read (then it is
    built again: a damaged cache file never stops a server)."""
    import faiss

    if not path.is_file():
        return None
    for flags in (faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY, 0):
        try:
            index = faiss.read_index(str(path), flags)
            if hasattr(index, "hnsw"):
                return index
        except RuntimeError:
            continue
    return None


def _write(index, path: Path) -> None:
    """Save atomically (a half-written file is never read), then keep the newest ``KEEP_INDEXES``."""
    import faiss

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
        faiss.write_index(index, str(tmp))
        tmp.replace(path)
        old = sorted(path.parent.glob("hnsw-*.faiss"), key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in old[KEEP_INDEXES:]:
            stale.unlink(missing_ok=True)
    except (OSError, RuntimeError):
        pass  # a read-only model folder: the index is built at each start, as before


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Share of the exact top-k found by the approximate top-k (rows are queries)."""
    hits = sum(len(set(a[a >= 0]) & set(e[e >= 0])) for a, e in zip(approx, exact))
    return hits / max(1, int((exact >= 0).sum()))
