"""Every user's list, written to Parquet: in this process, or with Ray Data over a cluster's workers.

Both paths run the one :class:`~mosaicrec.ranking.pipeline.Pipeline` on the same :class:`Listing` (a
snapshot of the store's live state: the model, the catalog, the content and every user's events), so they
write the same rows as each other and as the API: live likes folded in, dislikes left out, erased users
not listed (and, if they came back, served from their new events only), users with nothing to go on given
the popular items (``cold_start``). The snapshot uses exact retrieval: an export is the honest list, and an
HNSW index does not travel to workers.

Rows: ``user_id``, ``rank`` (1 = best), ``item_id``, ``score``, ``cold_start``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mosaicrec.data.cluster import cpus_each, ray_session
from mosaicrec.data.content import ItemContent
from mosaicrec.errors import MosaicError
from mosaicrec.models.base import BaseRecommender
from mosaicrec.models.training import TrainingInfo
from mosaicrec.ranking.batch import batch_lists
from mosaicrec.ranking.live import LiveState, TrainedState
from mosaicrec.ranking.pipeline import Pipeline
from mosaicrec.ranking.snapshot import Catalog, ContentView, ModelView, Snapshot, make_snapshot

COLUMNS = ["user_id", "rank", "item_id", "score", "cold_start"]


@dataclass
class ExportSummary:
    folder: str
    users: int
    rows: int
    files: int
    workers: int


@dataclass
class Listing:
    """What the pipeline needs to list users anywhere, as plain picklable values."""

    model: BaseRecommender
    info: TrainingInfo
    catalog: Catalog
    content: ItemContent | None
    live: LiveState

    @classmethod
    def of_model(cls, model: BaseRecommender, info: TrainingInfo | None = None,
                 titles: dict[str, str] | None = None) -> Listing:
        """A bare model's listing (no store): its own items as the catalog (``titles`` by item id, else the
        ids), and each trained user's training items as their events, so they are left out of their lists
        as the service leaves out a user's likes."""
        seen = model._require_fitted()
        ids = [str(i) for i in model.item_ids]
        names = [str((titles or {}).get(i) or i) for i in ids]
        info = info or TrainingInfo()
        live = TrainedState(model.user_ids, model.item_ids, seen)
        return cls(model, info, Catalog.build(ids, names, [{} for _ in ids]), None, live)

    def snapshot(self) -> Snapshot:
        view = ModelView.build(self.model, self.info, use_ann=False, exact_below=0)
        content = ContentView.build(self.content, self.catalog.ids, False) if self.content is not None else None
        snap = make_snapshot(0, view, self.catalog, content, self.live.popularity(), use_ann=False)
        self.live.refresh_changed(view.users, view.item_index, self.model._require_fitted())
        return snap

    def users(self) -> list[str]:
        """Every user the model or the store knows, in id order, but erased users (unless they came back)."""
        known = {str(u) for u in self.model.user_ids} - set(self.live.erased)
        return sorted(known | set(self.live.users))


class ListBatch:
    """Lists a batch of user ids: a callable for Ray Data's ``map_batches`` and for the local path, holding
    one snapshot and pipeline (built once per worker)."""

    def __init__(self, listing: Listing | list, k: int, scenario: str | None = None) -> None:
        self.one_thread = isinstance(listing, list)
        if self.one_thread:  # a Ray object ref in a list: fetched once per worker, which has one CPU
            import ray

            listing = ray.get(listing[0])
        self.snap = listing.snapshot()
        self.pipeline = Pipeline(listing.live)
        self.k, self.scenario = k, scenario
        self.ids = np.asarray(self.snap.catalog.ids, dtype=object)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # one BLAS thread in both paths: the same arithmetic, so the same scores to the last bit
        with _blas().limit(limits=1, user_api="blas"):
            got = batch_lists(self.pipeline, self.snap, [str(u) for u in batch["user_id"]], self.k, self.scenario,
                              threads=1 if self.one_thread else (os.cpu_count() or 1))
        n = got.lengths()
        keep = got.items >= 0  # lists are best first, so a row's kept entries are its first n
        return {"user_id": np.repeat(np.asarray(got.users, dtype=object), n),
                "rank": np.broadcast_to(np.arange(1, self.k + 1, dtype=np.int16), got.items.shape)[keep],
                "item_id": self.ids[got.items[keep]],
                "score": got.scores[keep].astype(np.float32), "cold_start": np.repeat(got.cold, n)}


@functools.cache
def _blas():
    """This process's BLAS libraries, found once: a fresh ``threadpool_limits`` scans every loaded library
    (3 ms, which 200 batches of a 10M-event export paid 200 times)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def export_lists(listing: Listing, out: str | Path, k: int = 10, *, users: Iterable[str] | None = None,
                 scenario: str | None = None, workers: int = 0, address: str | None = None,
                 batch_size: int = 2048, rows_per_file: int = 1_000_000) -> ExportSummary:
    """Write the top ``k`` of ``users`` (default: :meth:`Listing.users`). With ``workers`` the lists are
    made on that many Ray workers and ``out`` is a folder of Parquet parts; without, ``out`` is a folder of
    parts too, or one ``.parquet`` / ``.csv`` file."""
    if not 1 <= k <= 10_000:
        raise MosaicError(f"k must be between 1 and 10000, got {k}")
    if scenario is not None:
        listing.model.knows_context(scenario, "scenario")  # a context-free model refuses a scenario
    out = Path(out)
    ids = np.array(list(users) if users is not None else listing.users(), dtype=object)
    single = not workers and out.suffix.lower() in (".parquet", ".csv")
    if out.suffix.lower() in (".parquet", ".csv") and workers:
        raise MosaicError("--workers writes a folder of Parquet parts: give --out a folder, not a file")
    if not single and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MosaicError(f"{out} is not empty: export into a new folder (parts of two runs would mix)")
    if workers:
        return _export_ray(listing, out, k, ids, scenario, workers, address, batch_size, rows_per_file)
    rank = ListBatch(listing, k, scenario)
    if single:
        frame = pd.concat([pd.DataFrame(rank({"user_id": ids[s:s + batch_size]}))
                           for s in range(0, len(ids), batch_size)] or [pd.DataFrame(columns=COLUMNS)])
        out.parent.mkdir(parents=True, exist_ok=True)
        (frame.to_parquet if out.suffix.lower() == ".parquet" else frame.to_csv)(out, index=False)
        return ExportSummary(str(out), len(ids), len(frame), 1, 0)
    return _write_parts(rank, out, ids, batch_size, rows_per_file)


def _write_parts(rank: ListBatch, out: Path, ids: np.ndarray, batch_size: int, rows_per_file: int) -> ExportSummary:
    out.mkdir(parents=True, exist_ok=True)
    writer, files, rows, in_file = None, 0, 0, 0
    try:
        for start in range(0, len(ids), batch_size):
            table = pa.table(rank({"user_id": ids[start:start + batch_size]}))
            if writer is None or in_file >= rows_per_file:
                if writer is not None:
                    writer.close()
                writer, in_file = pq.ParquetWriter(out / f"part-{files:05d}.parquet", table.schema), 0
                files += 1
            writer.write_table(table)
            in_file += table.num_rows
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    return ExportSummary(str(out), len(ids), rows, files, 0)


def _export_ray(listing: Listing, out: Path, k: int, ids: np.ndarray, scenario: str | None, workers: int,
                address: str | None, batch_size: int, rows_per_file: int) -> ExportSummary:
    out.mkdir(parents=True, exist_ok=True)
    with ray_session(address, workers) as ray:
        ref = ray.put(listing)
        # one block (and one Parquet part) per batch: the blocks spread over the workers
        blocks = [b for b in np.array_split(ids, max(workers, -(-len(ids) // batch_size))) if len(b)]
        ds = ray.data.from_items([{"user_id": str(u)} for b in blocks for u in b], override_num_blocks=len(blocks))
        # the listing actors ask for half a CPU each: with a whole one they held every CPU and Ray Data's
        # Parquet writes waited for them (measured: 14 s against 8 s for 40,000 users on 2 CPUs)
        listed = ds.map_batches(ListBatch, fn_constructor_args=([ref], k, scenario), batch_size=batch_size,
                                batch_format="numpy", concurrency=workers, num_cpus=cpus_each(ray, workers) / 2)
        # an absolute path: workers do not run in this process's folder (on a cluster of several machines,
        # give a folder they all see, e.g. a shared mount)
        listed.write_parquet(str(out.resolve()), min_rows_per_file=rows_per_file)  # not a part per block
    files = sorted(out.glob("*.parquet"))
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    if not rows and len(ids):
        raise MosaicError(f"the Ray workers wrote no parts into {out}: on a cluster of several machines, "
                          "export into a folder every machine sees (a shared mount)")
    return ExportSummary(str(out), len(ids), rows, len(files), workers)


def read_export(where: str | Path) -> pa.Table:
    """An export's rows (a folder of parts or one file), sorted by user and rank."""
    where = Path(where)
    if where.suffix.lower() == ".csv":
        table = pa.Table.from_pandas(pd.read_csv(where, dtype={"user_id": str, "item_id": str}),
                                     preserve_index=False)
    else:
        table = pq.read_table(str(where))
    return table.sort_by([("user_id", "ascending"), ("rank", "ascending")])
