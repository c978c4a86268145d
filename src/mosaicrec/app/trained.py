"""A trained model folder and what serving it needs: the model, its training record, the store's data, and
the item content (saved with the model, beside the store, or encoded through the cache)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

from mosaicrec.data.content import ItemContent
from mosaicrec.data.store import Store
from mosaicrec.errors import MosaicError
from mosaicrec.models.base import BaseRecommender
from mosaicrec.models.registry import load_model
from mosaicrec.data.likes import like_threshold
from mosaicrec.models.training import CONTENT_FILE, TrainingInfo


@dataclass
class Trained:
    """A loaded model folder and the store it serves from."""

    model: BaseRecommender
    info: TrainingInfo
    items: pd.DataFrame  # the store's catalog (a server reads no events through this)
    store_path: Path


def model_store(model_dir: Path, store: Path | None) -> Path | None:
    """The store a model was trained on (its training record), unless ``store`` names one."""
    if store is None:
        recorded = TrainingInfo.load(model_dir).store
        store = Path(recorded) if recorded else None
    return store


def load_trained(model_dir: Path, store: Path | None = None) -> Trained:
    """A saved model, its training record, the catalog of the store it was trained on (or ``store``) read
    read-only, and that store's path. A model saved before the record was kept gets the dataset's default
    like threshold, as it was trained with (only then are the events read here)."""
    if not (Path(model_dir) / "model.json").is_file():
        raise MosaicError(f"{model_dir} holds no trained model (model.json missing): give the --out folder of "
                          "`mosaicrec train`")
    model = load_model(model_dir)
    info = TrainingInfo.load(model_dir)
    with Store(model_store(model_dir, store), read_only=True) as st:
        items = st.catalog()
        store_path = st.path
        if info.threshold is None and not (model_dir / "training.json").exists():
            weights = st.events_frame(("weight",))["weight"].to_numpy()
            info = info.model_copy(update={"threshold": like_threshold(weights, st.like_rule(), where=str(st.path))})
    return Trained(model, info, items, Path(store_path))


def saved_content(model_dir: Path, store_path: Path) -> ItemContent | None:
    """Content saved with the model, else the store's ``content.npz`` (from `mosaicrec encode`), else None."""
    for path in (model_dir / CONTENT_FILE, Path(store_path).parent / "content.npz"):
        if path.is_file():
            return ItemContent.load(path)
    return None


def encoder_pairs(info: TrainingInfo) -> list[str] | None:
    """The model's encoders as ``NAME=ENCODER`` entries (their parameters: :func:`encoder_params`)."""
    return [f"{name}={spec['name']}" for name, spec in info.encoders.items()] or None


def encoder_params(info: TrainingInfo) -> dict[str, dict]:
    """The parameters the model's encoders were made with, by content name."""
    return {name: dict(spec.get("params") or {}) for name, spec in info.encoders.items() if spec.get("params")}


def parse_pairs(entries: list[str] | None, what: str = "--encoder") -> dict[str, str]:
    """``NAME=VALUE`` entries as a dict; a clear error for an entry without ``=``."""
    out = {}
    for entry in entries or []:
        name, sep, value = entry.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise MosaicError(f"{what} expects NAME=ENCODER, e.g. text=minilm, got {entry!r}")
        out[name.strip()] = value.strip()
    return out


def catalog_content(items: pd.DataFrame, store_path: Path, encoder: list[str] | None,
                    text_fields: list[str] | None, fields: dict[str, list[str]] | None = None,
                    console: Console | None = None, params: dict[str, dict] | None = None
                    ) -> tuple[ItemContent, dict[str, dict]]:
    """Encode a catalog through the cache beside the store: ``encoder`` entries are NAME=ENCODER, none
    means each modality's default encoder; ``params``: a feature's encoder parameters (feature name →
    dict). Returns the content and each encoder's spec (name, params, key)."""
    from mosaicrec.encoders import EmbeddingCache, create_encoder, default_cache_path, encode_items
    from mosaicrec.encoders.stage import default_encoders

    params = params or {}
    pairs = parse_pairs(encoder) if encoder else {}
    unknown = sorted(set(params) - set(pairs))
    if unknown:
        raise MosaicError(f"--encoder-param names {unknown[0]!r}, which no --encoder makes")
    encs = ({name: create_encoder(enc, **params.get(name, {})) for name, enc in pairs.items()} if encoder
            else default_encoders(items))
    unknown = sorted(set(fields or {}) - set(encs))
    if unknown:
        raise MosaicError(f"--field names {unknown[0]!r}, which no --encoder makes")
    with EmbeddingCache(default_cache_path(store_path)) as cache:
        encoded = encode_items(items, encs, cache=cache, text_fields=text_fields, fields=fields, console=console)
    if console is not None:
        for rep in encoded.reports:
            console.print("  " + rep.describe(), soft_wrap=True, highlight=False)
    specs = {name: {**enc.spec(), "key": enc.key} for name, enc in encs.items()}
    return encoded.content, specs


def serving_encoders(info: TrainingInfo, encoder: list[str] | None, text_fields: list[str] | None
                     ) -> dict[str, str]:
    """Content name → encoder name to serve with: the model's record, which ``encoder`` may repeat but
    not contradict (a model trained on e5 content searched with MiniLM returns nonsense)."""
    recorded = {name: spec["name"] for name, spec in info.encoders.items()}
    given = parse_pairs(encoder)
    for name, enc in given.items():
        if name in recorded and recorded[name] != enc:
            raise MosaicError(f"the model was trained with {name}={recorded[name]}; --encoder {name}={enc} would "
                              "serve its content with another encoder (leave --encoder out, or retrain)")
    if info.text_fields and text_fields and list(text_fields) != list(info.text_fields):
        raise MosaicError(f"the model was trained with --text-fields {' '.join(info.text_fields)}")
    return {**recorded, **given}


def check_sources(content: ItemContent, specs: dict[str, str]) -> None:
    """Refuse content made by other encoders than those the model is served with."""
    for name, enc in specs.items():
        source = content.sources.get(name)
        if source is not None and source.split("@")[0] != enc:
            raise MosaicError(f"the content file's {name!r} was made by {source}, not {enc}: re-encode "
                              f"(`mosaicrec encode --encoder {name}={enc}`) or pass the right --content")


def missing_content(items: pd.DataFrame, content: ItemContent | None) -> list[str]:
    """Catalog items the content lacks (all of them without content)."""
    have = set(map(str, content.item_ids)) if content is not None else set()
    return [i for i in items["item_id"].astype(str).to_numpy(object).tolist() if i not in have]


def merge_content(base: ItemContent, extra: ItemContent) -> ItemContent:
    """``base`` with ``extra``'s items added (same modalities; extra's rows win)."""
    ids = np.array(list(dict.fromkeys([*map(str, base.item_ids), *map(str, extra.item_ids)])), dtype=object)
    a, b = base.align(ids), extra.align(ids)
    feats, masks = {}, {}
    for m in a.modalities:
        feats[m], masks[m] = a.features[m].copy(), a.masks[m].copy()
        if m in b.features:
            feats[m][b.masks[m]] = b.features[m][b.masks[m]]
            masks[m] |= b.masks[m]
    return ItemContent(ids, feats, masks, dict(base.sources))
