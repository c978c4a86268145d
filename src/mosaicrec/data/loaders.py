"""Read items, users and events from CSV/TSV, JSONL or Parquet, with a column mapping and validation.

Bad rows are never dropped silently. With ``on_error="raise"`` (the default) the first bad row stops the
load with a message naming file, row, column and what was expected. With ``on_error="reject"`` bad rows
go to a rejects CSV (row, column, reason, the original record) and the :class:`LoadReport` counts them by
reason. Row numbers count data records from 1, the header excluded.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from mosaicrec.data.schema import (ITEM_COLUMNS, MAX_TIMESTAMP, MAX_WEIGHT, USER_COLUMNS, EventSchema, ItemSchema,
                                   UserSchema)
from mosaicrec.errors import ValidationError

OnError = Literal["raise", "reject"]
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
           ".parquet": "parquet", ".pq": "parquet"}


@dataclass
class LoadReport:
    """What a load read, kept and rejected, and why."""

    source: str
    n_read: int = 0
    n_loaded: int = 0
    n_rejected: int = 0
    reasons: Counter = field(default_factory=Counter)
    rejects_path: str | None = None
    #: schema field → the source column(s) it was read from
    used: dict[str, str] = field(default_factory=dict)
    #: source columns no schema field reads, each with a suggested mapping (``--map events.weight=rating``)
    ignored: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        text = f"{self.source}: {self.n_loaded} of {self.n_read} rows loaded"
        if self.n_rejected:
            why = "; ".join(f"{n}× {r}" for r, n in self.reasons.most_common(5))
            text += f", {self.n_rejected} rejected ({why}) → {self.rejects_path}"
        if self.used:
            text += "; columns used: " + ", ".join(f"{c} → {f}" for f, c in self.used.items())
        if self.ignored:
            text += "; IGNORED: " + ", ".join(f"{c} (to use it: --map {hint})" if hint else c
                                              for c, hint in self.ignored.items())
        return text


def detect_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    for s in reversed(suffixes):
        if s in FORMATS:
            return FORMATS[s]
    raise ValidationError(f"unsupported file type {''.join(path.suffixes) or '(none)'}; "
                          f"expected one of {', '.join(sorted(FORMATS))}", source=path.name)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a file into a DataFrame of raw values (text formats stay strings, so validation sees them).

    Delimited text must be UTF-8; a record with more or fewer fields than the header is kept as a row
    flagged bad (``frame.attrs["bad_rows"]``: row index → reason), so the load refuses or rejects it by
    row like any other bad value instead of shifting columns."""
    path = Path(path)
    if not path.is_file():
        raise ValidationError("file not found", source=str(path))
    kind = detect_format(path)
    try:
        if kind in ("csv", "tsv"):
            return _read_delimited(path, "," if kind == "csv" else "\t")
        if kind == "parquet":
            return pd.read_parquet(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError, csv.Error) as e:
        raise ValidationError(f"cannot parse file: {e}", source=path.name) from None
    return _read_jsonl(path)


def _decode_utf8(data: bytes, name: str) -> str:
    """UTF-8 text (a BOM dropped); a bad byte is reported with its line, not only its offset."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise ValidationError(f"line {line}, byte {col}: byte 0x{data[e.start]:02x} is not UTF-8; re-save the "
                              "file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)", source=name,
                              row=line - 1 if line > 1 else None) from None


def _read_delimited(path: Path, sep: str) -> pd.DataFrame:
    text = _decode_utf8(path.read_bytes(), path.name)
    records = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    header = next(records, None)
    if not header:
        raise ValidationError("the file is empty (no header row)", source=path.name)
    header = [h.strip() for h in header]
    dup = [h for h, n in Counter(header).items() if n > 1]
    if dup:
        raise ValidationError(f"the header names column {dup[0]!r} twice", source=path.name)
    n, rows, bad = len(header), [], {}
    for rec in records:
        if not rec or (len(rec) == 1 and not rec[0].strip()):
            continue  # a blank line is no record (pandas skips them too)
        if len(rec) != n:
            bad[len(rows)] = f"expected {n} fields ({', '.join(header)}), found {len(rec)}"
            rec = (rec + [""] * n)[:n]
        rows.append(rec)
    frame = pd.DataFrame(rows, columns=header, dtype=object) if rows else pd.DataFrame(columns=header, dtype=object)
    frame.attrs["bad_rows"] = bad
    return frame


def _read_jsonl(path: Path) -> pd.DataFrame:
    records = []
    with path.open(encoding="utf-8") as f:
        for row, line in enumerate((ln for ln in f if ln.strip()), start=1):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValidationError(f"invalid JSON ({e.msg})", source=path.name, row=row) from None
            if not isinstance(rec, dict):
                raise ValidationError(f"expected a JSON object, got {type(rec).__name__}",
                                      source=path.name, row=row)
            records.append(rec)
    return pd.DataFrame.from_records(records)


class _Checker:
    """Collects per-row problems so that a load either fails on the first or rejects them all."""

    def __init__(self, frame: pd.DataFrame, source: str) -> None:
        self.frame, self.source = frame, source
        self.bad = np.zeros(len(frame), dtype=bool)
        self.problems: list[tuple[int, str, str]] = []  # (row index, column, reason)
        for i, reason in frame.attrs.get("bad_rows", {}).items():  # structural: wrong number of fields
            self.problems.append((int(i), "(row)", reason))
            self.bad[i] = True

    def require_columns(self, columns: list[str]) -> None:
        missing = [c for c in columns if c not in self.frame.columns]
        if missing:
            found = ", ".join(map(str, self.frame.columns)) or "(none)"
            raise ValidationError(f"missing column; the file has: {found}", source=self.source,
                                  column=missing[0])

    def flag(self, mask: np.ndarray, column: str, reason_of_value) -> None:
        values = self.frame[column].to_numpy() if column in self.frame.columns else None
        for i in np.flatnonzero(mask & ~self.bad):
            got = values[i] if values is not None else None
            self.problems.append((int(i), column, reason_of_value(got)))
        self.bad |= mask

    def finish(self, on_error: OnError, rejects_path: str | Path | None) -> LoadReport:
        report = LoadReport(self.source, n_read=len(self.frame))
        if self.problems and on_error == "raise":
            i, column, reason = min(self.problems)
            more = len(self.problems) - 1
            tail = (f" ({more} more bad rows; `--on-error reject` (on_error='reject' in Python) loads the "
                    "good ones and writes the bad ones to a rejects file)") if more else ""
            raise ValidationError(reason + tail, source=self.source, row=i + 1,
                                  column=None if column == "(row)" else column)
        if self.problems:
            path = Path(rejects_path or f"{self.source}.rejects.csv")
            path.parent.mkdir(parents=True, exist_ok=True)
            rows = [{"row": i + 1, "column": c, "reason": r,
                     "record": json.dumps(_jsonable(self.frame.iloc[i].to_dict()), ensure_ascii=False)}
                    for i, c, r in sorted(self.problems)]
            pd.DataFrame(rows).to_csv(path, index=False)
            report.rejects_path = str(path)
            report.reasons = Counter(f'{c}: {_reason_kind(r)}' for _, c, r in self.problems)
        report.n_rejected = int(self.bad.sum())
        report.n_loaded = report.n_read - report.n_rejected
        return report


def _reason_kind(reason: str) -> str:
    return reason.split(", got")[0]


def _jsonable(rec: dict) -> dict:
    out = {}
    for k, v in rec.items():
        if isinstance(v, (np.generic,)):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[str(k)] = v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else str(v)
    return out


def _as_str(series: pd.Series) -> pd.Series:
    s = series.astype(object)
    return s.where(~s.isna(), "").map(lambda v: str(int(v)) if isinstance(v, float) and v.is_integer()
                                      else str(v)).str.strip()


def _empty_mask(s: pd.Series) -> np.ndarray:
    return (s == "").to_numpy()


def _numbers(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Values as float64 and a mask of those that are not finite numbers (``NaN``, ``inf``, ``1e400``)."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        vals = series.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        vals = pd.to_numeric(series.astype(object).map(lambda v: v.strip() if isinstance(v, str) else v),
                             errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return vals, ~np.isfinite(vals)


def _timestamps(series: pd.Series, unit: str) -> tuple[np.ndarray, np.ndarray]:
    """Unix seconds from numbers (in ``unit``) or ISO dates; a mask of unparseable values."""
    if pd.api.types.is_datetime64_any_dtype(series):
        ts = series.dt.tz_localize(None) if getattr(series.dt, "tz", None) is not None else series
        bad = ts.isna().to_numpy()
        out = np.where(bad, 0, ts.astype("datetime64[s]").astype("int64").to_numpy())
        bad |= (out < 0) | (out > MAX_TIMESTAMP)
        return np.where(bad, 0, out), bad
    nums, bad_num = _numbers(series)
    out = np.zeros(len(series), dtype=np.int64)
    scale = {"s": 1, "ms": 1000}.get(unit)
    if scale is None:
        raise ValidationError(f"timestamp_unit must be 's' or 'ms', got {unit!r}")
    not_number = bad_num.copy()  # only these may be dates; a number out of range stays refused
    # out of range before the cast: 1e30 // 1 would wrap to -2**63 (numpy only warns)
    finite = np.nan_to_num(nums, nan=0.0, posinf=0.0, neginf=0.0)
    bad_num |= (finite < 0) | (finite / scale > MAX_TIMESTAMP)
    out[~bad_num] = (nums[~bad_num] // scale).astype(np.int64)
    if not_number.any():
        idx = np.flatnonzero(not_number)
        parsed = pd.to_datetime(series.iloc[idx].astype(str), errors="coerce", utc=True, format="ISO8601")
        for j, t in zip(idx, parsed):
            if t is pd.NaT or pd.isna(t):
                continue
            try:
                seconds = int(t.timestamp())
            except (OverflowError, ValueError):
                continue
            if 0 <= seconds <= MAX_TIMESTAMP:
                out[j], bad_num[j] = seconds, False
    return out, bad_num


def load_events(path: str | Path, schema: EventSchema | None = None, *, on_error: OnError = "raise",
                rejects_path: str | Path | None = None,
                frame: pd.DataFrame | None = None) -> tuple[pd.DataFrame, LoadReport]:
    """Load interaction events into the canonical columns
    ``user_id, item_id, timestamp, event_type, weight, context`` (context: a JSON object string).

    ``frame`` lets a caller validate records it already holds (e.g. posted to the API) under ``path``'s name.
    """
    schema = schema or EventSchema()
    path = Path(path)
    raw = read_table(path) if frame is None else frame
    schema = _resolve_optional(schema, raw, ("timestamp", "weight", "event_type"))
    check = _Checker(raw, path.name)
    check.require_columns([schema.user, schema.item]
                          + [c for c in (schema.timestamp, schema.weight) if c is not None]
                          + list(schema.context))

    users, items = _as_str(raw[schema.user]), _as_str(raw[schema.item])
    check.flag(_empty_mask(users), schema.user, lambda v: "expected a user id, got an empty value")
    check.flag(_empty_mask(items), schema.item, lambda v: "expected an item id, got an empty value")
    if schema.timestamp is not None:
        ts, bad_ts = _timestamps(raw[schema.timestamp], schema.timestamp_unit)
        check.flag(bad_ts, schema.timestamp,
                   lambda v: f"expected a Unix time ({schema.timestamp_unit}) or an ISO-8601 date from 1970 "
                             f"to 9999, got {v!r}")
    else:
        ts = np.zeros(len(raw), dtype=np.int64)
    if schema.weight is not None:
        weight, bad_w = _numbers(raw[schema.weight])
        check.flag(bad_w, schema.weight, lambda v: f"expected a number, got {v!r}")
        check.flag(~bad_w & (np.abs(np.nan_to_num(weight)) > MAX_WEIGHT), schema.weight,
                   lambda v: f"expected a number within ±{MAX_WEIGHT:g}, got {v!r}")
    else:
        weight = np.ones(len(raw))
    if schema.event_type is not None and schema.event_type in raw.columns:
        etype = _as_str(raw[schema.event_type]).replace("", schema.default_event_type)
    else:
        etype = pd.Series([schema.default_event_type] * len(raw), dtype=object)
    if schema.context:
        ctx_cols = {c: _as_str(raw[c]).to_numpy() for c in schema.context}
        context = [json.dumps({c: ctx_cols[c][i] for c in schema.context if ctx_cols[c][i] != ""},
                              sort_keys=True, ensure_ascii=False) for i in range(len(raw))]
    else:
        context = ["{}"] * len(raw)

    report = check.finish(on_error, rejects_path)
    _columns_report(report, raw, {"user": schema.user, "item": schema.item, "timestamp": schema.timestamp,
                                  "weight": schema.weight, "event_type": schema.event_type,
                                  "context": list(schema.context)}, "events")
    keep = ~check.bad
    out = pd.DataFrame({
        "user_id": users.to_numpy()[keep], "item_id": items.to_numpy()[keep],
        "timestamp": ts[keep].astype(np.int64), "event_type": etype.to_numpy()[keep],
        "weight": np.nan_to_num(weight[keep]).astype(np.float64),
        "context": np.asarray(context, dtype=object)[keep],
    })
    return out, report


def _resolve_optional(schema: EventSchema, raw: pd.DataFrame, fields: tuple[str, ...]) -> EventSchema:
    """Optional fields left at their default column name are absent when the file lacks that column;
    a column named on purpose must exist; "" means none (TOML has no null)."""
    update = {}
    for name in fields:
        column = getattr(schema, name)
        if column == "" or (column is not None and column not in raw.columns
                            and name not in schema.model_fields_set):
            update[name] = None
    return schema.model_copy(update=update) if update else schema


def load_items(path: str | Path, schema: ItemSchema | None = None, *, on_error: OnError = "raise",
               rejects_path: str | Path | None = None,
               frame: pd.DataFrame | None = None) -> tuple[pd.DataFrame, LoadReport]:
    """Load a catalog into the canonical columns ``item_id, title, texts, image, audio, video, attributes``.

    Relative image/audio/video paths resolve against ``schema.media_root`` (default: the file's folder); whether
    the media can be decoded is the encoding stage's concern, which records broken files per item.
    """
    schema = schema or ItemSchema()
    path = Path(path)
    raw = read_table(path) if frame is None else frame
    check = _Checker(raw, path.name)
    cols = [schema.id] + [c for c in (schema.title, schema.image, schema.audio, schema.video) if c] + schema.texts \
        + schema.attributes
    check.require_columns(cols)

    ids = _as_str(raw[schema.id])
    check.flag(_empty_mask(ids), schema.id, lambda v: "expected an item id, got an empty value")
    dup = ids.duplicated(keep="first").to_numpy() & ~_empty_mask(ids)
    first_row = {v: i + 1 for i, v in reversed(list(enumerate(ids)))}
    check.flag(dup, schema.id, lambda v: f"duplicate item id {v!r} (first at row {first_row[str(v)]})")

    root = Path(schema.media_root) if schema.media_root else path.parent
    titles = _as_str(raw[schema.title]) if schema.title else pd.Series([""] * len(raw))
    text_cols = {c: _as_str(raw[c]).to_numpy() for c in schema.texts}
    texts = [{c: v[i] for c, v in text_cols.items() if v[i] != ""} for i in range(len(raw))]
    image = _media(raw, schema.image, root)
    audio = _media(raw, schema.audio, root)
    video = _media(raw, schema.video, root)
    attributes = _attributes(raw, schema.attributes, schema.multi_value_separator)

    report = check.finish(on_error, rejects_path)
    _columns_report(report, raw, {"id": schema.id, "title": schema.title, "texts": list(schema.texts),
                                  "image": schema.image, "audio": schema.audio, "video": schema.video,
                                  "attributes": list(schema.attributes)}, "items")
    keep = np.flatnonzero(~check.bad)
    out = pd.DataFrame({
        "item_id": ids.to_numpy()[keep], "title": titles.to_numpy()[keep],
        "texts": [texts[i] for i in keep],
        # object dtype keeps None as None (pandas would turn a string column's None into NaN)
        "image": pd.Series([image[i] for i in keep], dtype=object),
        "audio": pd.Series([audio[i] for i in keep], dtype=object),
        "video": pd.Series([video[i] for i in keep], dtype=object),
        "attributes": [attributes[i] for i in keep],
    }, columns=ITEM_COLUMNS)
    return out, report


def load_users(path: str | Path, schema: UserSchema | None = None, *, on_error: OnError = "raise",
               rejects_path: str | Path | None = None,
               frame: pd.DataFrame | None = None) -> tuple[pd.DataFrame, LoadReport]:
    """Load users into the canonical columns ``user_id, attributes``."""
    schema = schema or UserSchema()
    path = Path(path)
    raw = read_table(path) if frame is None else frame
    check = _Checker(raw, path.name)
    check.require_columns([schema.id] + schema.attributes)
    ids = _as_str(raw[schema.id])
    check.flag(_empty_mask(ids), schema.id, lambda v: "expected a user id, got an empty value")
    check.flag(ids.duplicated().to_numpy() & ~_empty_mask(ids), schema.id,
               lambda v: f"duplicate user id {v!r}")
    attributes = _attributes(raw, schema.attributes, None)
    report = check.finish(on_error, rejects_path)
    _columns_report(report, raw, {"id": schema.id, "attributes": list(schema.attributes)}, "users")
    keep = np.flatnonzero(~check.bad)
    out = pd.DataFrame({"user_id": ids.to_numpy()[keep], "attributes": [attributes[i] for i in keep]},
                       columns=USER_COLUMNS)
    return out, report


# video first: a "video_clip" column is a video, not the audio its "clip" would suggest
_MEDIA_WORDS = {"video": ("video", "trailer", "movie_file", "mp4", "webm"),
                "image": ("image", "poster", "photo", "picture", "thumbnail", "cover", "img"),
                "audio": ("audio", "clip", "sound", "mp3", "wav", "track_file")}
_TEXT_WORDS = ("description", "plot", "summary", "text", "overview", "review", "body", "abstract", "content")


def _columns_report(report: LoadReport, raw: pd.DataFrame, fields: dict[str, str | list[str] | None],
                    table: str) -> None:
    """Record which column each field read and which columns nothing read, with a mapping to suggest
    (``--map events.weight=rating``): a column silently dropped is data silently lost."""
    used: set[str] = set()
    for name, col in fields.items():
        cols = [c for c in ([col] if isinstance(col, str) else (col or [])) if c and c in raw.columns]
        if cols:
            report.used[name] = "+".join(cols)
            used.update(cols)
    for col in raw.columns:
        if col in used:
            continue
        low = str(col).lower()
        if table == "events":
            numeric = len(raw) > 0 and not _numbers(raw[col])[1].all()
            hint = (f"events.weight={col}" if fields.get("weight") is None and numeric
                    else f"events.context={col}")
        elif table == "items":
            kind = next((k for k, words in _MEDIA_WORDS.items() if any(w in low for w in words)), None)
            if kind and not fields.get(kind):
                hint = f"items.{kind}={col}"
            elif any(w in low for w in _TEXT_WORDS):
                hint = f"items.texts={col}"
            else:
                hint = f"items.attributes={col}"
        else:
            hint = f"users.attributes={col}"
        report.ignored[str(col)] = hint


def _media(raw: pd.DataFrame, column: str | None, root: Path) -> list[str | None]:
    if not column:
        return [None] * len(raw)
    out: list[str | None] = []
    for v in _as_str(raw[column]):
        if v == "":
            out.append(None)
        elif "://" in v or Path(v).is_absolute():
            out.append(v)
        else:
            out.append(str((root / v).resolve()))
    return out


def _attributes(raw: pd.DataFrame, columns: list[str], sep: str | None) -> list[dict]:
    """Per row, a dict attribute → value; numeric columns stay numbers, separated strings become lists."""
    out: list[dict] = [{} for _ in range(len(raw))]
    for c in columns:
        col = raw[c]
        numeric, bad = _numbers(col)
        text = _as_str(col)
        all_numeric = bool((~bad | (text == "").to_numpy()).all()) and (~bad).any()
        for i in range(len(raw)):
            if text.iat[i] == "":
                continue
            if all_numeric:
                v = float(numeric[i])
                out[i][c] = int(v) if v.is_integer() else v
            elif sep and sep in text.iat[i]:
                out[i][c] = [p.strip() for p in text.iat[i].split(sep) if p.strip()]
            else:
                out[i][c] = text.iat[i]
    return out
