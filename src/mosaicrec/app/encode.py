"""Encode a store's catalog with pretrained encoders (cached by content hash, optionally on Ray) and write
the embeddings where ``serve`` and ``train`` look for them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from mosaicrec.data.datasets import ingest_source, resolve_source
from mosaicrec.data.store import Store
from mosaicrec.encoders import EmbeddingCache, EncodeReport, create_encoder, default_cache_path, encode_items
from mosaicrec.errors import MosaicError


@dataclass
class Encoded:
    reports: list[EncodeReport]
    target: Path
    cache: Path | None
    failures: int
    failures_file: Path | None


def parse_params(pairs: list[str]) -> dict:
    """``key=value`` entries, each value read as JSON where it is JSON (``3``, ``true``, ``[1, 2]``)."""
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise MosaicError(f"--param expects key=value, got {pair!r}")
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    return params


def build_encoders(pairs: list[str] | None, params: list[str] | None):
    """``NAME=ENCODER`` entries (or bare ENCODER, named by its modality) with ``ENCODER.key=value``
    parameters; ``None`` without entries (each modality's default)."""
    if not pairs:
        if params:
            raise MosaicError("--param needs --encoder")
        return None
    by_encoder: dict[str, dict] = {}
    for key, value in parse_params(params or []).items():
        enc, dot, field = key.partition(".")
        if not dot:
            raise MosaicError(f"--param expects ENCODER.key=value, got {key!r}")
        by_encoder.setdefault(enc, {})[field] = value
    out = {}
    for pair in pairs:
        name, sep, enc = pair.partition("=")
        name, enc = (name, enc) if sep else (None, name)
        created = create_encoder(enc.strip(), **by_encoder.pop(enc.strip(), {}))
        out[(name or created.modality).strip()] = created
    if by_encoder:
        raise MosaicError(f"--param names encoders not in --encoder: {', '.join(by_encoder)}")
    return out


def encode_store(store: Path | None = None, *, dataset: str | None = None, encoder: list[str] | None = None,
                 param: list[str] | None = None, text_fields: list[str] | None = None, ray: str | None = None,
                 output: Path | None = None, no_cache: bool = False, console: Console | None = None) -> Encoded:
    """Encode every catalog item's text, image and audio and save the embeddings (``content.npz`` beside
    the store by default); failures are written with their reasons beside them."""
    with Store(store) as st:
        if dataset:
            ingest_source(st, resolve_source(dataset))
        items = st.load_dataset().items
        store_path = Path(st.path)
    if items.empty:
        raise MosaicError(f"the store {store_path} holds no items; run `mosaicrec ingest` first")
    encoders = build_encoders(encoder, param)
    cache = None if no_cache else EmbeddingCache(default_cache_path(store_path))
    try:
        result = encode_items(items, encoders, cache=cache, text_fields=text_fields, ray=ray, console=console)
    finally:
        if cache is not None:
            cache.close()
    target = output or store_path.parent / "content.npz"
    result.content.save(target)
    fails = result.failures()
    failures_file = None
    if len(fails):
        failures_file = target.with_name("encode_failures.csv")
        fails.to_csv(failures_file, index=False)
    return Encoded(result.reports, target, cache.path if cache is not None else None, len(fails), failures_file)
