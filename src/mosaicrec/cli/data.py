"""Commands over data and content: datasets, encoders, knowledge graphs, ingest, encode."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

from mosaicrec.cli import Repeat, StoreOpt, _opt, _say, _table, app, datasets_app, encoders_app, err, kg_app


@datasets_app.command("list")
def datasets_list() -> None:
    """List the built-in datasets and whether each can be loaded here."""
    from mosaicrec.data.datasets import DATASETS, data_root, dataset_available

    rows = []
    for name, entry in sorted(DATASETS.items()):
        ok, why = dataset_available(name)
        rows.append([name, "yes" if ok else f"no ({why})", entry.description])
    _table(f"built-in datasets (data root: {data_root()})", ["name", "available", "description"], rows)


@encoders_app.command("list")
def encoders_list() -> None:
    """List the registered encoders, their modality and whether their packages are installed."""
    from mosaicrec.encoders import DEFAULT_ENCODERS, ENCODERS, encoder_available

    rows = []
    for name, cls in sorted(ENCODERS.items(), key=lambda kv: (kv[1].modality, kv[0])):
        ok, why = encoder_available(name)
        star = "*" if DEFAULT_ENCODERS.get(cls.modality) == name else ""
        rows.append([name + star, cls.modality, "yes" if ok else f"no ({why})", cls.description])
    _table("encoders (default per modality marked *)", ["name", "modality", "installed", "model / package"], rows)


@kg_app.command("fetch")
def kg_fetch() -> None:
    """Download the public ML-100K knowledge graph (RecBole's ml-100k.kg / .link, from the recbole==1.2.1
    wheel on PyPI; the package is not installed) into the cache."""
    from mosaicrec.app.kg import fetch_ml100k_graph

    with err.status("fetching the ML-100K knowledge graph"):
        _say("\n".join(fetch_ml100k_graph()))


@kg_app.command("show")
def kg_show(
    dataset: Annotated[str, _opt("built-in dataset whose items the graph is joined to")] = "ml100k-multimodal",
    source: Annotated[str, _opt("recbole-ml100k, attributes, or a folder with one .kg and one .link file")]
        = "recbole-ml100k",
    item: Annotated[Repeat, _opt("two item ids (repeat): print the path joining them")] = None,
) -> None:
    """Size of an item knowledge graph over a dataset's items, and the path between two items."""
    from mosaicrec.app.kg import describe_graph

    with err.status(f"loading {dataset} and its knowledge graph"):
        found = describe_graph(dataset, source, item)
    _say(found.text)
    if found.path:
        _say(found.path)


@app.command()
def ingest(
    dataset: Annotated[Optional[str], _opt("a built-in dataset name")] = None,
    events: Annotated[Optional[Path], _opt("events file (CSV/TSV/JSONL/Parquet)")] = None,
    items: Annotated[Optional[Path], _opt("items file")] = None,
    users: Annotated[Optional[Path], _opt("users file")] = None,
    source: Annotated[Optional[Path], _opt("a TOML file describing files and column mappings (a "
                                           "[dataset.source] table)")] = None,
    store: StoreOpt = None,
    on_error: Annotated[str, _opt("raise: reject the whole load on a bad row; reject: write bad rows to a "
                                  "rejects file")] = "raise",
    rejects_dir: Annotated[Optional[Path], _opt("folder for rejects files")] = None,
    mapping: Annotated[Repeat, _opt("TABLE.FIELD=COLUMN[,COLUMN]: read a schema field from your column, e.g. "
                                    "events.weight=rating, items.texts=description,plot, items.attributes=genres, "
                                    "items.image=poster, users.attributes=age (repeatable)", "--map")] = None,
    likes: Annotated[Optional[str], _opt("which weights are likes: a number (weights at or above it) or 'any' "
                                         "(every weight above 0); kept in the store for train, serve and "
                                         "evaluate")] = None,
    rating_scale: Annotated[Optional[str], _opt("LOW,HIGH: the weights are ratings on this scale (likes: the "
                                                "top quarter, unless --likes)")] = None,
) -> None:
    """Validate data files and write them to the store (transactional, idempotent), with the rule for which
    weights are likes. The summary names the column each field was read from and every column ignored."""
    from mosaicrec.app.ingest import apply_mapping, ingest as run, source_of
    from mosaicrec.data.likes import LikeRule

    src = source_of(dataset, events, items, users, source)
    done = run(apply_mapping(src, mapping) if mapping else src, store, likes=LikeRule.parse(likes, rating_scale),
               on_error=on_error, rejects_dir=rejects_dir)
    for rep in done.reports:
        _say(rep.describe())
    _say(done.describe())
    if done.warning:
        err.print(f"[yellow]warning:[/yellow] {done.warning}", highlight=False, soft_wrap=True)


@app.command()
def encode(
    dataset: Annotated[Optional[str], _opt("ingest this built-in dataset first [default: encode the store's "
                                           "catalog]")] = None,
    encoder: Annotated[Repeat, _opt("NAME=ENCODER, e.g. text=minilm or text_tfidf=tfidf (repeatable) [default: "
                                    "the default encoder of each modality present]")] = None,
    param: Annotated[Repeat, _opt("ENCODER.key=value, e.g. minilm.batch_size=64")] = None,
    text_fields: Annotated[Optional[str], _opt("comma-separated text fields to encode, 'title' included "
                                               "[default: title and all]")] = None,
    ray: Annotated[Optional[str], _opt("encode on a Ray cluster at this address, or 'local' to start one here",
                                       "--ray")] = None,
    output: Annotated[Optional[Path], _opt("where to write the embeddings (.npz) [default: content.npz beside "
                                           "the store]", "--out")] = None,
    store: StoreOpt = None,
    no_cache: Annotated[bool, _opt("ignore and do not write the cache", "--no-cache")] = False,
) -> None:
    """Encode every item's text, image and audio with pretrained models (cached by content hash)."""
    from mosaicrec.app.encode import encode_store

    fields = [f.strip() for f in text_fields.split(",")] if text_fields else None
    done = encode_store(store, dataset=dataset, encoder=encoder, param=param, text_fields=fields, ray=ray,
                        output=output, no_cache=no_cache, console=err)
    for rep in done.reports:
        _say(rep.describe())
    if done.failures:
        _say(f"{done.failures} failures with reasons: {done.failures_file}")
    _say(f"embeddings: {done.target}" + ("" if done.cache is None else f"; cache: {done.cache}"))
