"""Every user's top-k from a trained model, written to sharded Parquet: in this process, or with Ray Data
over a cluster's workers (``workers > 0``), each worker holding the model once and ranking batches of
users. Both paths rank with the same function, so they write the same rows.

Rows: ``user_id``, ``rank`` (1 = best), ``item_id``, ``score``; each user's training items are left out
(``exclude_seen``). This is the model's batch list for the users it was trained on; the service's list
(``mosaicrec export --model``) also folds in live events and dislikes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mosaicrec.data.cluster import cpus_each, ray_session
from mosaicrec.errors import MosaicError
from mosaicrec.models.base import BaseRecommender


@dataclass
class ExportSummary:
    folder: str
    users: int
    rows: int
    files: int
    workers: int


class TopK:
    """Ranks batches of user indices: a callable for Ray Data's ``map_batches`` and for the local path."""

    def __init__(self, model: BaseRecommender | list, k: int, exclude_seen: bool) -> None:
        self.one_thread = isinstance(model, list)
        if self.one_thread:  # a Ray object ref in a list: fetched once per worker, which has one CPU
            import ray

            model = ray.get(model[0])
        self.model, self.k, self.exclude_seen = model, k, exclude_seen
        self.user_ids = np.asarray(model.user_ids).astype(str)
        self.item_ids = np.asarray(model.item_ids).astype(str)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from threadpoolctl import threadpool_limits

        users = np.asarray(batch["id"], dtype=np.int64)
        with threadpool_limits(1 if self.one_thread else None):
            items, scores = self.model.recommend(users, self.k, exclude_seen=self.exclude_seen)
        keep = items >= 0
        n = keep.sum(axis=1)
        return {"user_id": np.repeat(self.user_ids[users], n),
                "rank": np.concatenate([np.arange(1, c + 1, dtype=np.int16) for c in n]) if len(n) else
                np.empty(0, np.int16),
                "item_id": self.item_ids[items[keep]],
                "score": scores[keep].astype(np.float32)}


def export_top_k(model: BaseRecommender, folder: str | Path, k: int = 10, *, users: np.ndarray | None = None,
                 exclude_seen: bool = True, workers: int = 0, address: str | None = None,
                 batch_size: int = 2048, rows_per_file: int = 1_000_000) -> ExportSummary:
    """Write the top ``k`` of ``users`` (model user indices; default all) under ``folder`` as Parquet parts."""
    if not 1 <= k <= 10_000:
        raise MosaicError(f"k must be between 1 and 10000, got {k}")
    out = Path(folder)
    if out.exists() and any(out.iterdir()):
        raise MosaicError(f"{out} is not empty: export into a new folder (parts of two runs would mix)")
    out.mkdir(parents=True, exist_ok=True)
    users = np.arange(model.n_users) if users is None else np.asarray(users, dtype=np.int64)
    if workers:
        return _export_ray(model, out, k, users, exclude_seen, workers, address, batch_size, rows_per_file)
    rank = TopK(model, k, exclude_seen)
    writer, files, rows, in_file = None, 0, 0, 0
    try:
        for start in range(0, len(users), batch_size):
            table = pa.table(rank({"id": users[start:start + batch_size]}))
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
    return ExportSummary(str(out), len(users), rows, files, 0)


def _export_ray(model: BaseRecommender, out: Path, k: int, users: np.ndarray, exclude_seen: bool, workers: int,
                address: str | None, batch_size: int, rows_per_file: int) -> ExportSummary:
    with ray_session(address, workers) as ray:
        ref = ray.put(model)
        # one block (and one Parquet part) per batch: the blocks spread over the workers
        blocks = np.array_split(users, max(workers, -(-len(users) // batch_size)))
        ds = ray.data.from_numpy([b for b in blocks if len(b)]).rename_columns({"data": "id"})
        # the ranking actors ask for half a CPU each: with a whole one they held every CPU and Ray Data's
        # Parquet writes waited for them (measured: 14 s against 8 s for 40,000 users on 2 CPUs)
        ranked = ds.map_batches(TopK, fn_constructor_args=([ref], k, exclude_seen), batch_size=batch_size,
                                batch_format="numpy", concurrency=workers, num_cpus=cpus_each(ray, workers) / 2)
        # an absolute path: workers do not run in this process's folder (on a cluster of several machines,
        # give a folder they all see, e.g. a shared mount)
        ranked.write_parquet(str(out.resolve()), min_rows_per_file=rows_per_file)  # not a part per block
    files = sorted(out.glob("*.parquet"))
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    if not rows and len(users):
        raise MosaicError(f"the Ray workers wrote no parts into {out}: on a cluster of several machines, "
                          "export into a folder every machine sees (a shared mount)")
    return ExportSummary(str(out), len(users), rows, len(files), workers)


def read_export(folder: str | Path) -> pa.Table:
    """An export's rows, sorted by user and rank (parts come in any order)."""
    table = pq.read_table(str(folder))
    return table.sort_by([("user_id", "ascending"), ("rank", "ascending")])
