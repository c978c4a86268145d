"""The encode stage: every item of a catalog through one encoder per modality, cached by content.

For each encoder:

1. take each item's input (text fields joined; image or audio path) and hash its content;
2. look the hashes up in the :class:`~mosaicrec.encoders.cache.EmbeddingCache`: hits cost nothing, and an
   all-cached run never loads the model;
3. encode the misses in batches: a background thread decodes and collates the next batches while the model
   runs on this one (locally), or batches go to workers on a Ray cluster; vectors are written to the cache
   every 2 seconds and when the run ends or is interrupted, so an interrupted run keeps its progress;
4. assemble an :class:`~mosaicrec.data.content.ItemContent` (one matrix and mask per modality).

A broken input (corrupt image, unreadable audio, empty text, missing file) fails that item for that encoder
only, with its reason; the item keeps its other modalities and the run goes on.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from mosaicrec.data.cluster import ray_session
from mosaicrec.data.content import ItemContent
from mosaicrec.data.kg import KnowledgeGraph, load_item_kg
from mosaicrec.encoders.base import (DEFAULT_ENCODERS, Encoder, MediaError, Modality, create_encoder,
                                     l2_normalize, media_path)
from mosaicrec.encoders.cache import EmbeddingCache, file_hash, text_hash
from mosaicrec.encoders.kg import KGEmbeddingConfig, kg_item_content
from mosaicrec.errors import ConfigError


def item_inputs(items: pd.DataFrame, modality: Modality, text_fields: Sequence[str] | None = None
                ) -> list[str | None]:
    """Each item's input for a modality: for text, the title and text fields as one passage
    (``Title. field: value. …``, ``text_fields`` picks and orders them; a field that is no text field
    but an attribute, e.g. ``genres``, is read from the attributes); for image/audio, the file path.
    ``None`` means the item has no such content (not an error)."""
    if modality == "text":
        out = []
        attributes = items["attributes"] if "attributes" in items else [None] * len(items)
        for title, texts, attrs in zip(items["title"], items["texts"], attributes):
            texts = dict(texts) if isinstance(texts, dict) else {}
            if text_fields is not None and isinstance(attrs, dict):
                for f in text_fields:
                    value = attrs.get(f)
                    if f not in texts and value is not None and not isinstance(value, dict):
                        texts[f] = "|".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
            names = list(texts) if text_fields is None else [f for f in text_fields if f != "title"]
            parts = [str(title).strip()] if title and (text_fields is None or "title" in text_fields) else []
            # Multi-valued fields are stored "a|b|c"; a model reads "a, b, c" as the list it is.
            parts += [f"{n}: {str(texts[n]).strip().replace('|', ', ')}" for n in names
                      if texts.get(n) and str(texts[n]).strip()]
            out.append(". ".join(p.rstrip(". ") for p in parts))
        return out
    column = items[modality] if modality in items else [None] * len(items)  # catalogs from before video
    return [str(v) if isinstance(v, str) and v else None for v in column]


@dataclass
class EncodeReport:
    """What one encoder did over the catalog."""

    name: str
    encoder: str
    modality: str
    n_items: int
    absent: int = 0
    cached: int = 0
    encoded: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (item id, reason)
    seconds: float = 0.0
    load_seconds: float = 0.0
    loaded_model: bool = False

    @property
    def ok(self) -> int:
        return self.n_items - self.absent - len(self.failures)

    def failure_counts(self) -> dict[str, int]:
        return dict(Counter(reason.split(":")[0] for _, reason in self.failures).most_common())

    def describe(self) -> str:
        work = self.seconds - self.load_seconds
        rate = f", {self.encoded / work:.1f} items/s" if self.encoded and work > 0 else ""
        load = f" + {self.load_seconds:.1f}s model load" if self.loaded_model else ""
        fails = "; failed: " + ", ".join(f"{n} {k}" for k, n in self.failure_counts().items()) \
            if self.failures else ""
        return (f"{self.name} ({self.encoder}): {self.ok}/{self.n_items} items have vectors "
                f"({self.cached} from cache, {self.encoded} encoded in {work:.1f}s{rate}{load}); "
                f"{self.absent} without {self.modality}{fails}")


@dataclass
class EncodeResult:
    content: ItemContent
    reports: list[EncodeReport]

    def failures(self) -> pd.DataFrame:
        """One row per failed (item, encoder) with the reason."""
        rows = [(r.name, r.encoder, item, reason) for r in self.reports for item, reason in r.failures]
        return pd.DataFrame(rows, columns=["name", "encoder", "item_id", "reason"])


@dataclass
class _Batch:
    """A batch's outcome: vectors for the positions that worked, reasons for those that did not."""

    ok: list[int]
    vectors: np.ndarray | None
    failed: dict[int, str]


def _prepare(encoder: Encoder, refs: Sequence[str]) -> tuple[Any, list[int], dict[int, str], list[Any]]:
    decoded, ok, failed = [], [], {}
    for j, ref in enumerate(refs):
        try:
            decoded.append(encoder.decode(ref))
            ok.append(j)
        except MediaError as e:
            failed[j] = str(e)
    return (encoder.collate(decoded) if decoded else None), ok, failed, decoded


def _forward(encoder: Encoder, prepared: tuple[Any, list[int], dict[int, str], list[Any]]) -> _Batch:
    collated, ok, failed, decoded = prepared
    if not ok:
        return _Batch([], None, failed)
    try:
        return _Batch(ok, encoder.forward(collated), failed)
    except (RuntimeError, ValueError):
        # One bad item must not sink its batch: find it by running the items one at a time.
        vectors, good = [], []
        for j, item in zip(ok, decoded):
            try:
                vectors.append(encoder.forward(encoder.collate([item]))[0])
                good.append(j)
            except (RuntimeError, ValueError) as e:
                failed[j] = f"model error: {e}"
        return _Batch(good, np.stack(vectors) if vectors else None, failed)


def encode_batch(encoder: Encoder, refs: Sequence[str]) -> _Batch:
    """Decode, collate and encode one batch, isolating failures (what every runner calls)."""
    return _forward(encoder, _prepare(encoder, refs))


def _run_local(encoder: Encoder, batches: list[list[str]], decode_threads: int, prefetch: int
               ) -> Iterator[_Batch]:
    encoder.setup()
    with ThreadPoolExecutor(max_workers=decode_threads, thread_name_prefix="decode") as pool:
        pending: deque = deque()
        todo = iter(batches)

        def submit() -> None:
            refs = next(todo, None)
            if refs is not None:
                pending.append(pool.submit(_prepare, encoder, refs))

        for _ in range(max(prefetch, decode_threads)):
            submit()
        while pending:
            prepared = pending.popleft().result()
            submit()
            yield _forward(encoder, prepared)


def encode_items(items: pd.DataFrame, encoders: Mapping[str, Encoder] | Sequence[Encoder] | None = None, *,
                 cache: EmbeddingCache | None = None, text_fields: Sequence[str] | None = None,
                 fields: Mapping[str, Sequence[str]] | None = None,
                 ray: str | None = None, decode_threads: int = 2, prefetch: int = 2,
                 progress: bool = True, console: Console | None = None) -> EncodeResult:
    """Encode a catalog (``Dataset.items``) with one encoder per name.

    ``encoders`` maps a feature name to an encoder (a list uses each encoder's modality as its name; the
    default is the default encoder of every modality the catalog has). ``ray`` is a cluster address, or
    ``"local"`` to start one on this machine, or ``None`` to run in this process. ``fields`` gives one
    feature its own text fields (feature name → fields), e.g. a TF-IDF of the crew next to an embedded plot.
    """
    encoders = _resolve_encoders(items, encoders)
    item_ids = items["item_id"].astype(str).to_numpy(dtype=object)
    feats, masks, sources, reports = {}, {}, {}, []
    console = console or Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, disable=not progress, transient=False) as bar:
        for name, enc in encoders.items():
            t0 = time.perf_counter()
            refs = item_inputs(items, enc.modality, (fields or {}).get(name, text_fields))
            report = EncodeReport(name, enc.name, enc.modality, len(refs))
            hashes, failed = _hash_inputs(enc.modality, refs)
            report.absent = sum(r is None for r in refs)
            if enc.needs_fit:
                enc.fit([r for r, h in zip(refs, hashes) if h is not None])
            key = enc.key
            wanted = {h for h in hashes if h is not None}
            vectors, cached_fails = cache.get(key, wanted) if cache is not None else ({}, {})
            report.cached = sum(1 for h in hashes if h in vectors)
            # One representative input per unseen hash: identical content is encoded once.
            todo: dict[str, str] = {}
            for ref, h in zip(refs, hashes):
                if h is not None and h not in vectors and h not in cached_fails and h not in todo:
                    todo[h] = ref
            order = list(todo)
            if enc.modality == "text":  # similar lengths batch together: less padding, same result
                order.sort(key=lambda h: len(todo[h]))
            size = enc.config.batch_size
            batch_hashes = [order[s:s + size] for s in range(0, len(order), size)]
            new_fails: dict[str, str] = {}
            if batch_hashes:
                report.loaded_model = True
                if not ray:
                    t_load = time.perf_counter()
                    enc.setup()
                    report.load_seconds = time.perf_counter() - t_load
                task = bar.add_task(f"{name} ({enc.name})", total=len(order))
                runner = _run_ray(enc, [[todo[h] for h in b] for b in batch_hashes], ray) if ray else \
                    _run_local(enc, [[todo[h] for h in b] for b in batch_hashes], decode_threads, prefetch)
                # closed here, not left to the garbage collector: a suspended runner shuts its decoding
                # pool down when collected, and a collection that lands inside a new thread's start
                # (which holds threading's shutdown lock) deadlocked on that pool's join
                with _CacheWriter(cache, key) as writer, contextlib.closing(runner):
                    for hs, batch in zip(batch_hashes, runner):
                        got = {hs[j]: v for j, v in zip(batch.ok, batch.vectors)} if batch.ok else {}
                        lost = {hs[j]: reason for j, reason in batch.failed.items()}
                        writer.add(got, lost)
                        vectors.update(got)
                        new_fails.update(lost)
                        bar.advance(task, len(hs))
            fail_reasons = {**cached_fails, **new_fails}
            dim = next((len(v) for v in vectors.values()), getattr(enc, "dim", 0))
            mat = np.zeros((len(refs), dim), np.float32)
            mask = np.zeros(len(refs), bool)
            for i, h in enumerate(hashes):
                if h in vectors:
                    mat[i], mask[i] = vectors[h], True
                elif h is not None:
                    failed[i] = fail_reasons[h]
            report.encoded = sum(1 for h in hashes if h in todo and h in vectors)
            report.failures = [(item_ids[i], failed[i]) for i in sorted(failed)]
            feats[name] = l2_normalize(mat) if enc.config.normalize else mat
            masks[name], sources[name] = mask, key
            _add_parts(enc, name, feats, masks, sources)
            report.encoder = key
            report.seconds = time.perf_counter() - t0
            reports.append(report)
    return EncodeResult(ItemContent(item_ids, feats, masks, sources), reports)


def part_of(name: str, source: str) -> tuple[str, str] | None:
    """``(feature, part)`` when content ``name`` is a part of another feature (``video_frames`` made by
    ``video@…#frames`` is part ``frames`` of ``video``); ``None`` for a whole feature."""
    key, sep, part = source.partition("#")
    if not sep or not name.endswith("_" + part):
        return None
    return name[: -len(part) - 1], part


def _add_parts(enc: Encoder, name: str, feats: dict, masks: dict, sources: dict) -> None:
    """An encoder whose vector has parts (video: frames and sound) gives them as features of their own
    when its config asks (``content = "parts"`` or ``"both"``)."""
    wanted = getattr(enc.config, "content", "fused")
    if wanted == "fused" or not hasattr(enc, "parts"):
        return
    from mosaicrec.encoders.video import split_parts

    for part, (block, has) in split_parts(feats[name], masks[name], enc.parts()).items():
        feats[f"{name}_{part}"], masks[f"{name}_{part}"] = block, has
        sources[f"{name}_{part}"] = f"{sources[name]}#{part}"
    if wanted == "parts":
        del feats[name], masks[name], sources[name]


class _CacheWriter:
    """Writes a run's vectors to the cache every ``seconds`` (and at the end, also when the run is
    interrupted). One DuckDB transaction costs about 11 ms whatever its size: per batch of 8 clips that
    was 3% of YAMNet's run, and more of a fast text encoder's."""

    def __init__(self, cache: EmbeddingCache | None, key: str, seconds: float = 2.0) -> None:
        self.cache, self.key, self.seconds = cache, key, seconds
        self.vectors: dict[str, np.ndarray] = {}
        self.failures: dict[str, str] = {}
        self.last = time.perf_counter()

    def add(self, vectors: dict[str, np.ndarray], failures: dict[str, str]) -> None:
        self.vectors.update(vectors)
        self.failures.update(failures)
        if time.perf_counter() - self.last >= self.seconds:
            self.flush()

    def flush(self) -> None:
        if self.cache is not None and (self.vectors or self.failures):
            self.cache.put(self.key, self.vectors, self.failures)
        self.vectors, self.failures = {}, {}
        self.last = time.perf_counter()

    def __enter__(self) -> _CacheWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()


def default_encoders(items: pd.DataFrame) -> dict[str, Encoder]:
    """The default encoder of each modality the catalog has (text always)."""
    import mosaicrec.encoders  # noqa: F401  (registers the built-ins)

    present = [m for m in ("text", "image", "audio", "video")
               if m == "text" or (m in items and any(isinstance(v, str) and v for v in items[m]))]
    return {m: create_encoder(DEFAULT_ENCODERS[m]) for m in present}


def _resolve_encoders(items: pd.DataFrame, encoders: Mapping[str, Encoder] | Sequence[Encoder] | None
                      ) -> dict[str, Encoder]:
    if encoders is None:
        return default_encoders(items)
    if isinstance(encoders, Mapping):
        return dict(encoders)
    out: dict[str, Encoder] = {}
    for enc in encoders:
        if enc.modality in out:
            raise ConfigError(f"two encoders for {enc.modality} ({out[enc.modality].name}, {enc.name}): "
                              "pass a mapping of names to encoders")
        out[enc.modality] = enc
    return out


def _hash_inputs(modality: str, refs: list[str | None]) -> tuple[list[str | None], dict[int, str]]:
    """Content hash per input; inputs that cannot even be read fail here (not cached: no content)."""
    hashes: list[str | None] = [None] * len(refs)
    failed: dict[int, str] = {}
    if modality == "text":
        for i, ref in enumerate(refs):
            if ref is not None:
                if ref.strip():
                    hashes[i] = text_hash(ref)
                else:
                    failed[i] = "empty text"
        return hashes, failed

    todo = [i for i, r in enumerate(refs) if r is not None]
    with ThreadPoolExecutor(max_workers=4) as pool:  # hashing is I/O plus GIL-free sha256
        futures = {i: pool.submit(file_hash, media_path(refs[i])) for i in todo}
        for i, fut in futures.items():
            try:
                hashes[i] = fut.result()
            except FileNotFoundError:
                failed[i] = f"file not found: {refs[i]}"
            except OSError as e:
                failed[i] = f"unreadable file: {refs[i]}: {e.strerror or e}"
    return hashes, failed


# -- Ray ------------------------------------------------------------------------------------------------
class _RayWorker:
    """Holds one encoder in a Ray worker process and encodes batches with the same code as a local run."""

    def __init__(self, spec: dict[str, Any]) -> None:
        params = dict(spec["params"])
        params["threads"] = params.get("threads") or 1  # one core per worker: the cluster schedules by CPU
        self.encoder = create_encoder(spec["name"], **params).setup()

    def run(self, refs: list[str]) -> _Batch:
        return encode_batch(self.encoder, refs)


def _run_ray(encoder: Encoder, batches: list[list[str]], address: str) -> Iterator[_Batch]:
    """Batches in order from actors on a Ray cluster (``"local"`` starts one here if none is running)."""
    if encoder.needs_fit:
        raise ConfigError(f"{encoder.name} is fitted on the catalog in this process; run it without --ray")
    with ray_session(address) as ray:
        n_workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        worker = ray.remote(num_cpus=1)(_RayWorker)
        actors = [worker.remote(encoder.spec()) for _ in range(min(n_workers, len(batches)))]
        inflight: deque = deque()
        todo = iter(enumerate(batches))

        def submit() -> None:
            nxt = next(todo, None)
            if nxt is not None:
                i, refs = nxt
                inflight.append(actors[i % len(actors)].run.remote(refs))

        for _ in range(2 * len(actors)):
            submit()
        while inflight:
            result = ray.get(inflight.popleft())
            submit()
            yield result
        for a in actors:
            ray.kill(a)


class ContentConfig(BaseModel):
    """Which item content models read (the ``[content]`` section of a config): a name per feature and the
    encoder that makes it, e.g. ``encoders = { text = "minilm", image = "efficientnet-lite0" }``."""

    model_config = ConfigDict(extra="forbid")

    encoders: dict[str, str] = Field(default_factory=dict, description="feature name → encoder name")
    params: dict[str, dict[str, Any]] = Field(default_factory=dict, description="feature name → encoder params")
    text_fields: list[str] | None = Field(None, description="item text fields read by text encoders")
    fields: dict[str, list[str]] = Field(default_factory=dict, description="feature name → its own text "
                                         "fields (text fields or attributes), e.g. crew = [\"director\", \"cast\"]")
    cache: str | None = Field(None, description="embedding cache file (default: beside the store)")
    kg: dict[str, KGEmbeddingConfig] = Field(default_factory=dict, description="feature name → a knowledge-graph "
                                             "representation of the items, e.g. [content.kg.kg] model = \"transe\"")


def encode_content(items: pd.DataFrame, config: ContentConfig, *, console: Console | None = None,
                   progress: bool = True) -> EncodeResult:
    """Encode ``items`` as ``config`` says, through the content-hash cache (re-runs are cache hits)."""
    from mosaicrec.encoders.cache import default_cache_path

    encoders = {name: create_encoder(enc, **config.params.get(name, {})) for name, enc in config.encoders.items()}
    clash = set(config.kg) & set(encoders)
    if clash:
        raise ConfigError(f"[content]: {', '.join(sorted(clash))} named both an encoder's feature and a "
                          "knowledge-graph feature; rename one")
    with EmbeddingCache(config.cache or default_cache_path()) as cache:
        result = encode_items(items, encoders, cache=cache, text_fields=config.text_fields, fields=config.fields,
                              console=console, progress=progress) if encoders else \
            EncodeResult(ItemContent(items["item_id"].astype(str).to_numpy(dtype=object)), [])
        graphs: dict[tuple[str, tuple[str, ...], tuple[str, ...]], KnowledgeGraph] = {}
        c, reports = result.content, list(result.reports)
        for name, kg_cfg in config.kg.items():
            t0 = time.perf_counter()
            where = (kg_cfg.source, tuple(kg_cfg.fields), tuple(kg_cfg.drop_relations))
            if where not in graphs:  # two features over one graph read it once
                graphs[where] = load_item_kg(items, kg_cfg.source, kg_cfg.fields,
                                             drop_relations=kg_cfg.drop_relations)
            stats: dict[str, int] = {}
            got = kg_item_content(graphs[where], kg_cfg, name=name, cache=cache, console=console, progress=progress,
                                  stats=stats)
            report = EncodeReport(name, got.sources[name], "graph", len(items))
            report.cached, report.encoded = stats["cached"], stats["computed"]
            report.absent = int((~got.masks[name]).sum())
            report.seconds = time.perf_counter() - t0
            reports.append(report)
            c = ItemContent(c.item_ids, {**c.features, **got.features}, {**c.masks, **got.masks},
                            {**c.sources, **got.sources})
    return EncodeResult(c, reports)
