"""Validate data files (or a built-in dataset) and write them to the store in one transaction, with the
rule that says which of their weights are likes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from mosaicrec.data.datasets import DatasetSource, ingest_source, resolve_source
from mosaicrec.data.likes import LikeRule, looks_like_ratings
from mosaicrec.data.loaders import LoadReport
from mosaicrec.data.store import IngestResult, Store
from mosaicrec.errors import MosaicError


@dataclass
class Ingested:
    reports: list[LoadReport]
    result: IngestResult
    store: Path
    counts: dict[str, int]
    seconds: float
    likes: LikeRule | None
    warning: str | None = None

    def describe(self) -> str:
        rule = self.likes.describe() if self.likes is not None else "no like rule declared"
        return (f"stored in {self.store}: {self.result.describe()} in {self.seconds:.1f}s; store now holds "
                f"{self.counts}; likes: {rule}")


def source_of(dataset: str | None = None, events: Path | None = None, items: Path | None = None,
              users: Path | None = None, source: Path | None = None) -> DatasetSource:
    """The dataset source of ``ingest``'s options: exactly one of a built-in name, an events file (with
    items and users files) or a source TOML file."""
    if sum(x is not None for x in (dataset, events, source)) != 1:
        raise MosaicError("give exactly one of --dataset, --events (with --items/--users), or --source")
    if dataset:
        return resolve_source(dataset)
    if source:
        from mosaicrec.config import load_source_file

        return load_source_file(source)
    assert events is not None
    return DatasetSource(name=events.stem, events=str(events), items=str(items) if items else None,
                         users=str(users) if users else None)


def apply_mapping(src: DatasetSource, mapping: list[str]) -> DatasetSource:
    """``TABLE.FIELD=COLUMN[,COLUMN]`` entries applied to a source's schemas (validated by them)."""
    schemas = {"events": "event_schema", "items": "item_schema", "users": "user_schema"}
    updates: dict[str, dict] = {}
    for entry in mapping:
        target, sep, columns = entry.partition("=")
        table, dot, field = target.strip().partition(".")
        if not sep or not dot or table not in schemas:
            raise MosaicError(f"--map expects TABLE.FIELD=COLUMN with TABLE one of events, items, users; "
                              f"got {entry!r}")
        schema = getattr(src, schemas[table])
        if field not in type(schema).model_fields:
            raise MosaicError(f"--map {entry!r}: {table} have no field {field!r}; fields: "
                              f"{', '.join(type(schema).model_fields)}")
        cols = [c.strip() for c in columns.split(",") if c.strip()]
        is_list = type(schema).model_fields[field].annotation == list[str]
        updates.setdefault(table, {})[field] = cols if is_list else (cols[0] if cols else None)
    out = {}
    for table, change in updates.items():
        schema = getattr(src, schemas[table])
        out[schemas[table]] = type(schema).model_validate({**schema.model_dump(exclude_unset=True), **change})
    return src.model_copy(update=out)


def ingest(src: DatasetSource, store: Path | None = None, *, likes: LikeRule | None = None,
           on_error: str = "raise", rejects_dir: Path | None = None) -> Ingested:
    """Load ``src`` into the store; ``likes`` declares (or replaces) the store's like rule. Where the
    weights look like ratings and no rule is declared, or was before, the result carries a warning."""
    if on_error not in ("raise", "reject"):
        raise MosaicError(f"--on-error must be raise or reject, got {on_error!r}")
    if likes is not None:
        src = src.model_copy(update={"likes": likes})
    with Store(store) as st:
        t0 = time.perf_counter()
        result, reports = ingest_source(st, src, on_error=on_error, rejects_dir=rejects_dir)
        rule = st.like_rule()
        warning = None
        if rule is None:
            seen = looks_like_ratings(st.events_frame(("weight",))["weight"].to_numpy())
            if seen is not None:
                warning = (f"the weights look like ratings ({seen[0]:g} to {seen[1]:g}) and no like rule is "
                           "declared: `mosaicrec train` will refuse until one is (ingest again with --likes 4 "
                           f"or --rating-scale {seen[0]:g},{seen[1]:g}, or --likes any)")
        return Ingested(reports, result, Path(st.path), st.counts(), time.perf_counter() - t0, rule, warning)
