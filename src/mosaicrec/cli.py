"""The ``mosaicrec`` command line: parses options, calls one library function per command, prints.

Errors are one line (``error: …``) with exit code 1; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from mosaicrec import __version__
from mosaicrec.errors import MosaicError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="mosaicrec: multimodal recommendations from raw media to a running API.")
datasets_app = typer.Typer(no_args_is_help=True, help="Built-in datasets.")
app.add_typer(datasets_app, name="datasets")
encoders_app = typer.Typer(no_args_is_help=True, help="Pretrained and baseline content encoders.")
app.add_typer(encoders_app, name="encoders")
kg_app = typer.Typer(no_args_is_help=True, help="Item knowledge graphs.")
app.add_typer(kg_app, name="kg")

out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

StoreOpt = Annotated[Optional[Path], typer.Option("--store", help="DuckDB store file "
                                                  "[default: $MOSAICREC_HOME/store.duckdb, ./.mosaicrec]")]


def _print_version(value: bool) -> None:
    if value:
        out.print(f"mosaicrec {__version__}")
        raise typer.Exit()


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="show tracebacks")] = False,
          version: Annotated[bool, typer.Option("--version", help="print the version", is_eager=True,
                                                callback=_print_version)] = False) -> None:
    """Global options (``--debug`` is read by :func:`main`)."""


@datasets_app.command("list")
def datasets_list() -> None:
    """List the built-in datasets and whether each can be loaded here."""
    from mosaicrec.data.datasets import DATASETS, data_root, dataset_available

    table = Table(title=f"built-in datasets (data root: {data_root()})")
    for col in ("name", "available", "description"):
        table.add_column(col)
    for name, entry in sorted(DATASETS.items()):
        ok, why = dataset_available(name)
        table.add_row(name, "yes" if ok else f"no ({why})", entry.description)
    out.print(table)


@encoders_app.command("list")
def encoders_list() -> None:
    """List the registered encoders, their modality and whether their packages are installed."""
    from mosaicrec.encoders import DEFAULT_ENCODERS, ENCODERS, encoder_available

    table = Table(title="encoders (default per modality marked *)")
    for col in ("name", "modality", "installed", "model / package"):
        table.add_column(col)
    for name, cls in sorted(ENCODERS.items(), key=lambda kv: (kv[1].modality, kv[0])):
        ok, why = encoder_available(name)
        star = "*" if DEFAULT_ENCODERS.get(cls.modality) == name else ""
        table.add_row(name + star, cls.modality, "yes" if ok else f"no ({why})", cls.description)
    out.print(table)


@kg_app.command("fetch")
def kg_fetch() -> None:
    """Download the public ML-100K knowledge graph (RecBole's ml-100k.kg / .link, from the recbole==1.2.1
    wheel on PyPI; the package is not installed) into the cache."""
    from mosaicrec.data.datasets import cache_dir
    from mosaicrec.data.kg import recbole_ml100k_files

    with err.status("fetching the ML-100K knowledge graph"):
        kg_path, link_path = recbole_ml100k_files(cache_dir())
    out.print(f"{kg_path}\n{link_path}", highlight=False)


@kg_app.command("show")
def kg_show(
    dataset: Annotated[str, typer.Option(help="built-in dataset whose items the graph is joined to")]
        = "ml100k-multimodal",
    source: Annotated[str, typer.Option(help="recbole-ml100k, attributes, or a folder with one .kg and one "
                                        ".link file")] = "recbole-ml100k",
    item: Annotated[Optional[list[str]], typer.Option(help="two item ids (repeat): print the path joining "
                                                      "them")] = None,
) -> None:
    """Size of an item knowledge graph over a dataset's items, and the path between two items."""
    from mosaicrec.data.datasets import load_dataset
    from mosaicrec.data.kg import load_item_kg
    from mosaicrec.errors import UnknownItemError

    with err.status(f"loading {dataset} and its knowledge graph"):
        data = load_dataset(dataset)
        kg = load_item_kg(data.items, source)
    linked = sum(not str(kg.entities[e]).startswith("item:") for e in kg.item_entity)
    named = int((kg.names != "").sum())
    out.print(f"{kg.n_entities:,} entities ({named:,} named), {kg.n_relations} relations, {len(kg.triples):,} "
              f"triples ({', '.join(f'{k}: {v:,}' for k, v in kg.sources.items())}); {linked:,} of "
              f"{len(kg.item_ids):,} items linked to the public graph", highlight=False)
    if item:
        if len(item) != 2:
            raise MosaicError("--item takes exactly two item ids")
        rows = {str(i): k for k, i in enumerate(kg.item_ids)}
        for i in item:
            if i not in rows:
                raise UnknownItemError(f"unknown item {i!r} in {dataset}")
        titles = dict(zip(data.items["item_id"].astype(str), data.items["title"]))
        found = kg.path(rows[item[0]], rows[item[1]])
        out.print(f"{titles[item[0]]} → " + (found.sentence(titles[item[1]]) if found else
                                              f"nothing in common with {titles[item[1]]}"), highlight=False)


@app.command()
def encode(
    dataset: Annotated[Optional[str], typer.Option(help="ingest this built-in dataset first "
                                                   "[default: encode the store's catalog]")] = None,
    encoder: Annotated[Optional[list[str]], typer.Option(help="NAME=ENCODER, e.g. text=minilm or "
                                                         "text_tfidf=tfidf (repeatable) [default: the "
                                                         "default encoder of each modality present]")] = None,
    param: Annotated[Optional[list[str]], typer.Option(help="ENCODER.key=value, e.g. minilm.batch_size=64")]
    = None,
    text_fields: Annotated[Optional[str], typer.Option(help="comma-separated text fields to encode, "
                                                       "'title' included [default: title and all]")] = None,
    ray: Annotated[Optional[str], typer.Option("--ray", help="encode on a Ray cluster at this address, or "
                                               "'local' to start one here")] = None,
    output: Annotated[Optional[Path], typer.Option("--out", help="where to write the embeddings (.npz) "
                                                   "[default: content.npz beside the store]")] = None,
    store: StoreOpt = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="ignore and do not write the cache")] = False,
) -> None:
    """Encode every item's text, image and audio with pretrained models (cached by content hash)."""
    from mosaicrec.data.datasets import ingest_source, resolve_source
    from mosaicrec.data.store import Store
    from mosaicrec.encoders import EmbeddingCache, default_cache_path, encode_items

    with Store(store) as st:
        if dataset:
            ingest_source(st, resolve_source(dataset))
        items = st.load_dataset().items
        store_path = Path(st.path)
    if items.empty:
        raise MosaicError(f"the store {store_path} holds no items; run `mosaicrec ingest` first")
    encoders = _build_encoders(encoder, param)
    fields = [f.strip() for f in text_fields.split(",")] if text_fields else None
    cache = None if no_cache else EmbeddingCache(default_cache_path(store_path))
    try:
        result = encode_items(items, encoders, cache=cache, text_fields=fields, ray=ray, console=err)
    finally:
        if cache is not None:
            cache.close()
    for rep in result.reports:
        out.print(rep.describe(), soft_wrap=True, highlight=False)
    target = output or store_path.parent / "content.npz"
    result.content.save(target)
    fails = result.failures()
    if len(fails):
        fails.to_csv(target.with_name("encode_failures.csv"), index=False)
        out.print(f"{len(fails)} failures with reasons: {target.with_name('encode_failures.csv')}")
    out.print(f"embeddings: {target}" + ("" if cache is None else f"; cache: {cache.path}"))


def _build_encoders(pairs: list[str] | None, params: list[str] | None):
    from mosaicrec.encoders import create_encoder

    if not pairs:
        if params:
            raise MosaicError("--param needs --encoder")
        return None
    by_encoder: dict[str, dict] = {}
    for key, value in _parse_params(params or []).items():
        enc, dot, field = key.partition(".")
        if not dot:
            raise MosaicError(f"--param expects ENCODER.key=value, got {key!r}")
        by_encoder.setdefault(enc, {})[field] = value
    out_map = {}
    for pair in pairs:
        name, sep, enc = pair.partition("=")
        name, enc = (name, enc) if sep else (None, name)
        created = create_encoder(enc.strip(), **by_encoder.pop(enc.strip(), {}))
        out_map[(name or created.modality).strip()] = created
    if by_encoder:
        raise MosaicError(f"--param names encoders not in --encoder: {', '.join(by_encoder)}")
    return out_map


@app.command()
def ingest(
    dataset: Annotated[Optional[str], typer.Option(help="a built-in dataset name")] = None,
    events: Annotated[Optional[Path], typer.Option(help="events file (CSV/TSV/JSONL/Parquet)")] = None,
    items: Annotated[Optional[Path], typer.Option(help="items file")] = None,
    users: Annotated[Optional[Path], typer.Option(help="users file")] = None,
    source: Annotated[Optional[Path], typer.Option(help="a TOML file describing files and column "
                                                   "mappings (a [dataset.source] table)")] = None,
    store: StoreOpt = None,
    on_error: Annotated[str, typer.Option(help="raise: reject the whole load on a bad row; "
                                          "reject: write bad rows to a rejects file")] = "raise",
    rejects_dir: Annotated[Optional[Path], typer.Option(help="folder for rejects files")] = None,
    mapping: Annotated[Optional[list[str]], typer.Option(
        "--map", help="TABLE.FIELD=COLUMN[,COLUMN]: read a schema field from your column, e.g. "
                      "events.weight=rating, items.texts=description,plot, items.attributes=genres, "
                      "items.image=poster, users.attributes=age (repeatable)")] = None,
) -> None:
    """Validate data files and write them to the store (transactional, idempotent). The summary names the
    column each field was read from and every column that was ignored."""
    from mosaicrec.data.datasets import DatasetSource, ingest_source, resolve_source
    from mosaicrec.data.store import Store

    if on_error not in ("raise", "reject"):
        raise MosaicError(f"--on-error must be raise or reject, got {on_error!r}")
    if sum(x is not None for x in (dataset, events, source)) != 1:
        raise MosaicError("give exactly one of --dataset, --events (with --items/--users), or --source")
    if dataset:
        src = resolve_source(dataset)
    elif source:
        from mosaicrec.config import load_source_file
        src = load_source_file(source)
    else:
        src = DatasetSource(name=events.stem, events=str(events), items=str(items) if items else None,
                            users=str(users) if users else None)
    if mapping:
        src = _apply_mapping(src, mapping)
    with Store(store) as st:
        t0 = time.perf_counter()
        result, reports = ingest_source(st, src, on_error=on_error, rejects_dir=rejects_dir)
        for rep in reports:
            out.print(rep.describe())
        out.print(f"stored in {st.path}: {result.describe()} in {time.perf_counter() - t0:.1f}s; "
                  f"store now holds {st.counts()}")


def _apply_mapping(src, mapping: list[str]):
    """``--map TABLE.FIELD=COLUMN[,COLUMN]`` entries applied to a source's schemas (validated by them)."""
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


@app.command()
def train(
    model: Annotated[str, typer.Option(help="registered model name, e.g. ease, als, bpr")],
    output: Annotated[Path, typer.Option("--out", help="folder to save the model in")],
    param: Annotated[Optional[list[str]], typer.Option(help="hyper-parameter as key=value (repeatable)")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="ingest this built-in dataset first")] = None,
    store: StoreOpt = None,
    snapshot: Annotated[Optional[Path], typer.Option(
        help="train on a store snapshot (written by a running service's retrain, or Store.export_snapshot) "
             "instead of the store, which a running service holds")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="ratings ≥ this are positives "
                                                       "[default: top quarter of the rating scale]")] = None,
    encoder: Annotated[Optional[list[str]], typer.Option(
        help="content models: NAME=ENCODER per content feature, e.g. text=minilm (repeatable) "
             "[default: the default encoder of each modality the catalog has]")] = None,
    text_fields: Annotated[Optional[list[str]], typer.Option(help="item text fields text encoders read")] = None,
    field: Annotated[Optional[list[str]], typer.Option(
        help="NAME=F1,F2: the text fields (or attributes) one content feature reads, e.g. "
             "crew=director,writer,cast,genres (repeatable)")] = None,
) -> None:
    """Train a model on everything in the store (or a snapshot of it) and save it with its training record:
    the positive threshold, when the data was read, and the encoders of content models (whose content is
    saved beside the model, so that serving starts without encoding). Shows each epoch and its loss."""
    from mosaicrec.data.datasets import ingest_source, resolve_source
    from mosaicrec.data.store import Store
    from mosaicrec.models import MODELS
    from mosaicrec.models.training import TrainingInfo, default_threshold, fit_on_dataset, save_trained

    params = _parse_params(param or [])
    if snapshot is not None:
        if dataset or store:
            raise MosaicError("--snapshot trains on the snapshot alone: leave out --dataset and --store")
        with Store.open_snapshot(snapshot) as st:
            data = st.load_dataset()
        taken = json.loads((snapshot / "snapshot.json").read_text())
        store_path, as_of = Path(taken["source"]), float(taken["taken_at"])
    else:
        with Store(store) as st:
            if dataset:
                ingest_source(st, resolve_source(dataset))
            as_of = time.time()
            data = st.load_dataset()
            store_path = st.path
    if data.interactions.n_events == 0:
        raise MosaicError(f"the store {store_path} holds no events; run `mosaicrec ingest` first")
    content, specs = None, {}
    if model in MODELS and MODELS[model].needs_content:
        content, specs = _catalog_content(data.items, store_path, encoder, text_fields, _parse_fields(field))
    used = threshold if threshold is not None else default_threshold(data)
    t0 = time.perf_counter()
    with _EpochProgress(model, data.interactions.n_events) as progress:
        fitted = fit_on_dataset(data, model, params, used, content=content, on_epoch=progress.update)
    seconds = time.perf_counter() - t0
    info = TrainingInfo(dataset=data.name, store=str(Path(store_path).resolve()), threshold=used,
                        data_as_of=as_of, encoders=specs, text_fields=text_fields, fields=_parse_fields(field))
    save_trained(fitted, output, info, content)
    rule = f"weight ≥ {used:g}" if used is not None else "weight > 0"
    out.print(f"trained {fitted!r} in {seconds:.2f}s on {data.name} (positives: {rule}); saved to {output}")


class _EpochProgress:
    """A progress bar with the epoch and its loss while a model trains (a spinner for closed-form ones)."""

    def __init__(self, model: str, n_events: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[loss]}"), TimeElapsedColumn(), console=err)
        self.task = self.progress.add_task(f"training {model} on {n_events:,} events", total=None, loss="")

    def update(self, record: dict) -> None:
        loss = next((f"{k} {record[k]:.4f}" for k in ("loss", "train_rmse") if k in record), "")
        if not loss and "correct" in record:
            loss = f"pairs ranked right {record['correct']:.3f}"
        self.progress.update(self.task, total=record.get("total"), completed=record.get(
            "epoch", record.get("iteration", 0)) + 1, loss=loss)
        if not self.progress.console.is_terminal:  # a log: one line per epoch instead of a redrawn bar
            err.print(f"  epoch {record.get('epoch', record.get('iteration', 0)) + 1}/{record.get('total')} "
                      f"{loss} ({record.get('seconds', 0):.2f}s)", highlight=False)

    def __enter__(self) -> _EpochProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()


def _model_store(model_dir: Path, store: Path | None) -> Path | None:
    """The store a model was trained on (its training record), unless ``--store`` names one."""
    from mosaicrec.models.training import TrainingInfo

    if store is None:
        recorded = TrainingInfo.load(model_dir).store
        store = Path(recorded) if recorded else None
    return store


ModelOpt = Annotated[Path, typer.Option("--model", help="folder written by `mosaicrec train`")]
KOpt = Annotated[int, typer.Option("-k", min=1, max=1000, help="list length")]


@contextmanager
def _listing(model_dir: Path, store: Path | None, need_content: bool = False):
    """The serving pipeline over a store opened read-only: the CLI's lists follow the API's rules (dislikes
    out, only likes folded in and cited, cold start for users with none)."""
    service = _list_service(model_dir, store, need_content)
    try:
        yield service
    finally:
        service.close()


def _list_service(model_dir: Path, store: Path | None, need_content: bool = False):
    from mosaicrec.serving.service import Service

    fitted, info, data, store_path = _load_trained(model_dir, store)
    content = _saved_content(model_dir, store_path)
    if content is None and need_content:
        content, _ = _catalog_content(data.items, store_path, _encoder_args(info), info.text_fields, info.fields)
    return Service(fitted, store_path, content, info=info, read_only=True)


def _load_trained(model_dir: Path, store: Path | None):
    """A saved model, its training record, the data of the store it was trained on (or ``--store``) read
    read-only, and that store's path. A model saved before the record was kept gets the dataset's default
    like threshold, as it was trained with."""
    from mosaicrec.data.store import Store
    from mosaicrec.models import load_model
    from mosaicrec.models.training import TrainingInfo, default_threshold

    fitted = load_model(model_dir)
    info = TrainingInfo.load(model_dir)
    with Store(_model_store(model_dir, store), read_only=True) as st:
        data = st.load_dataset()
        store_path = st.path
    if info.threshold is None and not (model_dir / "training.json").exists():
        info = info.model_copy(update={"threshold": default_threshold(data)})
    return fitted, info, data, store_path


def _saved_content(model_dir: Path, store_path: Path):
    """Content saved with the model, else the store's ``content.npz`` (from `mosaicrec encode`), else None."""
    from mosaicrec.data.content import ItemContent
    from mosaicrec.models.training import CONTENT_FILE

    for path in (model_dir / CONTENT_FILE, Path(store_path).parent / "content.npz"):
        if path.is_file():
            return ItemContent.load(path)
    return None


def _encoder_args(info) -> list[str] | None:
    return [f"{name}={spec['name']}" for name, spec in info.encoders.items()] or None


def _print_items(title: str, items, note: str | None = None) -> None:
    table = Table(title=title)
    for col, just in (("#", "right"), ("item", "left"), ("title", "left"), ("score", "right"), ("why", "left")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for rank, r in enumerate(items, start=1):
        table.add_row(str(rank), r.item_id, r.title, f"{r.score:.4f}", r.explanation or "")
    out.print(table)
    if note:
        out.print(note)


@app.command()
def recommend(
    user: Annotated[str, typer.Option(help="external user id")],
    model_dir: ModelOpt,
    k: KOpt = 10,
    store: StoreOpt = None,
    include_seen: Annotated[bool, typer.Option(help="also list items the user already liked (never ones "
                                               "they disliked)")] = False,
    scenario: Annotated[Optional[str], typer.Option(help="rank in this context (context models)")] = None,
) -> None:
    """Print a user's top-k, by the same rules as the API's list."""
    with _listing(model_dir, store) as service:
        result = service.recommend(user, k, exclude_seen=not include_seen, scenario=scenario)
    where = f" in {service.model.context_key} {scenario}" if scenario else ""
    note = (f"user {user} has no likes to go on: the popular items (cold start)" if result.cold_start else None)
    _print_items(f"top {k} for user {user}{where} ({result.model})", result.items, note)


@app.command()
def similar(
    item: Annotated[str, typer.Option(help="external item id")],
    model_dir: ModelOpt,
    k: KOpt = 10,
    modality: Annotated[Optional[str], typer.Option(help="one modality (text, image, audio) instead of all")] = None,
    store: StoreOpt = None,
) -> None:
    """Print the items most like one item, by content (encoded through the cache if not saved)."""
    with _listing(model_dir, store, need_content=True) as service:
        _print_items(f"items like {item}", service.similar(item, k, modality))


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="what to look for, in words")],
    model_dir: ModelOpt,
    k: KOpt = 10,
    user: Annotated[Optional[str], typer.Option(help="break ties towards this user's taste")] = None,
    store: StoreOpt = None,
) -> None:
    """Print the items nearest in meaning to a text query (image- and audio-only items too)."""
    with _listing(model_dir, store, need_content=True) as service:
        _print_items(f"search: {query}", service.search(query, k, user))


@app.command()
def export(
    model_dir: ModelOpt,
    output: Annotated[Path, typer.Option("--out", help="file to write: .parquet or .csv")],
    k: KOpt = 10,
    users: Annotated[Optional[Path], typer.Option(help="a file with one user id per line [default: every "
                                                  "user the model or the store knows]")] = None,
    scenario: Annotated[Optional[str], typer.Option(help="rank in this context (context models)")] = None,
    store: StoreOpt = None,
    workers: Annotated[int, typer.Option(min=0, max=4096, help=(
        "rank on this many Ray workers with Ray Data and write --out as a folder of Parquet parts: the "
        "model's own lists for the users it trained on (no live events folded in) [0: the service's rules, "
        "in this process]"))] = 0,
    ray_address: Annotated[Optional[str], typer.Option(help="Ray cluster for --workers [default: "
                                                       "$MOSAICREC_RAY_ADDRESS, else a local one]")] = None,
) -> None:
    """Write every user's top-k (user_id, rank, item_id, score, cold_start) to Parquet or CSV, by the same
    rules as the API's list; with --workers, the model's lists on a Ray cluster, as sharded Parquet."""
    import pandas as pd
    from rich.progress import track

    if workers:
        from mosaicrec.models import load_model
        from mosaicrec.ranking.export import export_top_k

        if users is not None or scenario is not None:
            raise MosaicError("--workers ranks every user the model trained on, in no scenario: leave out "
                              "--users and --scenario")
        with err.status(f"ranking every user on {workers} Ray workers"):
            summary = export_top_k(load_model(model_dir), output, k, workers=workers, address=ray_address)
        out.print(f"wrote {summary.rows:,} rows for {summary.users:,} users in {summary.files} Parquet parts "
                  f"to {summary.folder}")
        return
    if output.suffix.lower() not in (".parquet", ".csv"):
        raise MosaicError(f"--out must end in .parquet or .csv, got {output.name!r}")
    with _listing(model_dir, store) as service:
        if users is not None:
            ids = [ln.strip() for ln in users.read_text().splitlines() if ln.strip()]
        else:
            ids = sorted(set(service.snapshot.view.users) | set(service.live.users))
        rows = []
        for u in track(ids, description=f"top {k} for {len(ids):,} users", console=err):
            result = service.recommend(u, k, scenario=scenario)
            rows += [(u, rank, r.item_id, r.score, result.cold_start) for rank, r in enumerate(result.items, 1)]
    frame = pd.DataFrame(rows, columns=["user_id", "rank", "item_id", "score", "cold_start"])
    output.parent.mkdir(parents=True, exist_ok=True)
    (frame.to_parquet if output.suffix.lower() == ".parquet" else frame.to_csv)(output, index=False)
    out.print(f"wrote {len(frame):,} rows for {len(ids):,} users to {output}")


@app.command()
def serve(
    model_dir: ModelOpt,
    store: StoreOpt = None,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    api_key_file: Annotated[Optional[Path], typer.Option(
        help="file of API keys, one KEY:read, KEY:write or KEY:admin a line [also: $MOSAICREC_API_KEYS, "
             "comma-separated]")] = None,
    api_key: Annotated[Optional[list[str]], typer.Option(
        help="KEY:kind (repeatable); visible to other local users in `ps`: prefer --api-key-file")] = None,
    encoder: Annotated[Optional[list[str]], typer.Option(
        help="content NAME=ENCODER for similar items, search and new items [default: the model's own "
             "encoders, else each modality's default]")] = None,
    text_fields: Annotated[Optional[list[str]], typer.Option(help="item text fields text encoders read")] = None,
    rate_limit: Annotated[float, typer.Option(help="requests per second per key")] = 1000.0,
    retrieval: Annotated[str, typer.Option(help="auto | exact | ann (HNSW over the model's item vectors; "
                                           "auto: from 50,000 items)")] = "auto",
    content_file: Annotated[Optional[Path], typer.Option(
        "--content", help="item content .npz written by `mosaicrec encode` [default: the model's, else the "
                          "store's content.npz; items either lacks are encoded in the background]")] = None,
    no_content: Annotated[bool, typer.Option("--no-content", help="serve without item content (no similar "
                                             "items, search or explanations)")] = False,
    media_root: Annotated[Optional[Path], typer.Option(
        help="folder that item media paths sent to the API must lie in; uploads are kept in its uploads/ "
             "[default: $MOSAICREC_HOME/media]")] = None,
    media_read_root: Annotated[Optional[list[Path]], typer.Option(
        help="a further folder whose media may be referenced and served (e.g. a dataset's posters), never "
             "written (repeatable)")] = None,
    model_root: Annotated[Optional[Path], typer.Option(
        help="folder that POST /admin/reload may load models from and retraining writes to "
             "[default: the --model folder's parent]")] = None,
    max_media_mb: Annotated[float, typer.Option(min=0.01, help="largest media file accepted, MB")] = 25.0,
    public_docs: Annotated[bool, typer.Option(help="serve /docs and /openapi.json without a key")] = False,
    bandit: Annotated[Optional[str], typer.Option(
        help="let a contextual bandit (linucb | thompson | epsilon-greedy) pick lists from the model's "
             "candidates and learn from rewards: events whose context has the list's request_id")] = None,
    bandit_share: Annotated[float, typer.Option(min=0.0, max=1.0, help="share of requests the bandit "
                                                "serves")] = 1.0,
    bandit_scenario: Annotated[Optional[list[str]], typer.Option(
        help="only these scenarios get the bandit (repeatable) [default: all]")] = None,
    kg: Annotated[Optional[str], typer.Option(
        help="an item knowledge graph for explanation paths (\"both are directed by Y\"): recbole-ml100k, "
             "attributes (the items' crew, cast and genres), or a folder with one .kg and one .link file")] = None,
    report: Annotated[Optional[Path], typer.Option(
        help="an evaluation's output folder (`mosaicrec evaluate --out`), shown on the web page /ui")] = None,
) -> None:
    """Serve recommendations, similar items, search, new items, events and erasure over HTTP, and a web
    page to look at them (http://HOST:PORT/ui). Starts at once from the model and the store; content the
    model did not bring is encoded in the background."""
    import threading

    import uvicorn

    from mosaicrec.data.store import default_store_path
    from mosaicrec.serving.app import create_app
    from mosaicrec.serving.auth import load_keys
    from mosaicrec.serving.jobs import RetrainJobs
    from mosaicrec.serving.media import MediaPolicy
    from mosaicrec.serving.service import Service

    if api_key:
        err.print("[yellow]warning:[/yellow] keys given with --api-key are visible to other users in `ps`; "
                  "use --api-key-file or $MOSAICREC_API_KEYS", highlight=False)
    if report is not None and not report.is_dir():
        raise MosaicError(f"--report {report}: no such folder (give the --out folder of `mosaicrec evaluate`)")
    keys = load_keys(api_key_file, api_key)
    if not keys:
        raise MosaicError("give API keys: --api-key-file FILE (lines KEY:read, KEY:write or KEY:admin) or "
                          "$MOSAICREC_API_KEYS")
    t0 = time.perf_counter()
    fitted, info, data, store_path = _load_trained(model_dir, store)
    specs = _serving_encoders(info, encoder, text_fields)
    content = None
    if not no_content:
        from mosaicrec.data.content import ItemContent

        content = ItemContent.load(content_file) if content_file else _saved_content(model_dir, store_path)
        if content is not None:
            _check_sources(content, specs)
    media = MediaPolicy(media_root or Path(default_store_path()).parent / "media", int(max_media_mb * 1e6),
                        tuple(media_read_root or ()))
    root = (model_root or model_dir.resolve().parent)
    bandit_cfg = None
    if bandit is not None:
        from pydantic import ValidationError

        from mosaicrec.serving.bandit import BanditServing

        try:
            bandit_cfg = BanditServing(policy={"policy": bandit}, share=bandit_share, scenarios=bandit_scenario)
        except ValidationError:
            raise MosaicError(f"--bandit must be linucb, thompson or epsilon-greedy, not {bandit!r}") from None
        if no_content:
            raise MosaicError("--bandit scores items by their content; it cannot run with --no-content")
    graph = None
    if kg is not None:
        from mosaicrec.data.kg import load_item_kg

        with err.status(f"loading the knowledge graph {kg}"):
            graph = load_item_kg(data.items, kg)
    service = Service(fitted, store_path, content, info=info, retrieval=retrieval, media=media, model_root=root,
                      bandit=bandit_cfg, kg=graph)
    missing = [] if no_content else _missing_content(service, data.items, content)
    if missing:
        service.content_status = "encoding"
        threading.Thread(target=_encode_in_background, daemon=True, name="encode",
                         args=(service, data.items, missing, content, specs, text_fields or info.text_fields,
                               store_path, info.fields)).start()
    err.print(f"serving {fitted.name} over {len(service.snapshot.catalog):,} items ({service.retrieval} "
              f"retrieval) on http://{host}:{port}, ready in {time.perf_counter() - t0:.1f}s; content: "
              f"{service.content_status}" + (f" ({len(missing):,} items to encode)" if missing else ""),
              highlight=False)
    app_ = create_app(service, keys, rate_limit=rate_limit, burst=2 * rate_limit,
                      model_dir=str(Path(model_dir).resolve().relative_to(Path(root).resolve()))
                      if Path(model_dir).resolve().is_relative_to(Path(root).resolve()) else None,
                      jobs=RetrainJobs(service), public_docs=public_docs,
                      report_dir=str(report) if report is not None else None)
    uvicorn.run(app_, host=host, port=port, log_level="warning", access_log=False)


def _serving_encoders(info, encoder: list[str] | None, text_fields: list[str] | None) -> dict[str, str]:
    """Content name → encoder name to serve with: the model's record, which ``--encoder`` may repeat but
    not contradict (a model trained on e5 content searched with MiniLM returns nonsense)."""
    recorded = {name: spec["name"] for name, spec in info.encoders.items()}
    given = {}
    for entry in encoder or []:
        name, sep, enc = entry.partition("=")
        if not sep:
            raise MosaicError("--encoder expects NAME=ENCODER, e.g. text=minilm")
        given[name.strip()] = enc.strip()
    for name, enc in given.items():
        if name in recorded and recorded[name] != enc:
            raise MosaicError(f"the model was trained with {name}={recorded[name]}; --encoder {name}={enc} would "
                              "serve its content with another encoder (leave --encoder out, or retrain)")
    if info.text_fields and text_fields and list(text_fields) != list(info.text_fields):
        raise MosaicError(f"the model was trained with --text-fields {' '.join(info.text_fields)}")
    return {**recorded, **given}


def _check_sources(content, specs: dict[str, str]) -> None:
    for name, enc in specs.items():
        source = content.sources.get(name)
        if source is not None and source.split("@")[0] != enc:
            raise MosaicError(f"the content file's {name!r} was made by {source}, not {enc}: re-encode "
                              f"(`mosaicrec encode --encoder {name}={enc}`) or pass the right --content")


def _missing_content(service, items, content) -> list[str]:
    """Catalog items the served content lacks (all of them without content)."""
    have = set(map(str, content.item_ids)) if content is not None else set()
    return [i for i in items["item_id"].astype(str) if i not in have]


def _encode_in_background(service, items, missing: list[str], content, specs: dict[str, str], text_fields,
                          store_path, fields: dict[str, list[str]] | None = None) -> None:
    """Encode the items the served content lacks (through the cache, with progress on stderr), then serve
    the merged content. Routes that need content answer 503 meanwhile."""
    from mosaicrec.encoders import EmbeddingCache, create_encoder, default_cache_path, encode_items

    try:
        todo = items[items["item_id"].astype(str).isin(set(missing))]
        encoders = {name: create_encoder(enc) for name, enc in specs.items()} or None
        if encoders is None and content is not None:
            encoders = {name: create_encoder(src.split("@")[0]) for name, src in content.sources.items()}
        with EmbeddingCache(default_cache_path(store_path)) as cache:
            encoded = encode_items(todo, encoders, cache=cache, text_fields=text_fields, fields=fields,
                                   console=err).content
        merged = encoded if content is None else _merge_content(content, encoded)
        service.set_content(merged)
        err.print(f"content ready: {', '.join(merged.modalities)} for {len(merged.item_ids):,} items")
    except Exception as e:  # noqa: BLE001  serving goes on without content; say why
        service.content_status = f"failed: {e}"
        err.print(f"[red]content encoding failed:[/red] {e}", highlight=False)


def _merge_content(base, extra):
    """``base`` with ``extra``'s items added (same modalities; extra's rows win)."""
    import numpy as np

    from mosaicrec.data.content import ItemContent

    ids = np.array(list(dict.fromkeys([*map(str, base.item_ids), *map(str, extra.item_ids)])), dtype=object)
    a, b = base.align(ids), extra.align(ids)
    feats, masks = {}, {}
    for m in a.modalities:
        feats[m], masks[m] = a.features[m].copy(), a.masks[m].copy()
        if m in b.features:
            feats[m][b.masks[m]] = b.features[m][b.masks[m]]
            masks[m] |= b.masks[m]
    return ItemContent(ids, feats, masks, dict(base.sources))


@app.command()
def retrain(
    server: Annotated[str, typer.Option(help="the running service, e.g. http://127.0.0.1:8000")],
    api_key_file: Annotated[Optional[Path], typer.Option(help="file holding an admin key (KEY:admin)")] = None,
    model: Annotated[Optional[str], typer.Option(help="model to train [default: the served one]")] = None,
    param: Annotated[Optional[list[str]], typer.Option(help="hyper-parameter as key=value (repeatable)")] = None,
    wait: Annotated[bool, typer.Option(help="wait until the new model serves")] = True,
) -> None:
    """Retrain a running service's model on a snapshot of its store and swap it in (the store stays open
    for writes throughout). The key comes from the file or $MOSAICREC_API_KEYS (an admin one)."""
    import httpx

    from mosaicrec.serving.auth import load_keys

    keys = load_keys(api_key_file)
    admin = next((k for k, kind in keys.items() if kind == "admin"), None)
    if admin is None:
        raise MosaicError("retrain needs an admin key: --api-key-file FILE with a KEY:admin line, or "
                          "$MOSAICREC_API_KEYS")
    headers = {"X-API-Key": admin}
    body = {"model": model, "params": _parse_params(param) if param else None}
    with httpx.Client(base_url=server, timeout=30, headers=headers) as client:
        r = client.post("/admin/retrain", json=body)
        if r.status_code >= 400:
            raise MosaicError(f"the server refused: {r.status_code} {r.json().get('detail', r.text)}")
        job = r.json()
        out.print(f"retrain job {job['job_id']} started ({job['model']})")
        with err.status("training on a snapshot of the store") as status:
            while wait and job["state"] in ("queued", "running"):
                time.sleep(1.0)
                job = client.get(f"/admin/jobs/{job['job_id']}").json()
                status.update(f"training: {job['state']}")
    if job["state"] == "failed":
        raise MosaicError(f"retrain failed: {job['message']}")
    out.print(f"{job['state']}: {job.get('message') or ''}")


@app.command()
def evaluate(
    config: Annotated[Path, typer.Argument(help="experiment TOML file")],
    output: Annotated[Optional[Path], typer.Option("--out", help="report folder "
                                                   "[default: <output_dir>/<name>-<time>]")] = None,
) -> None:
    """Run an experiment from a config file: table, results JSON, markdown report and plot."""
    from mosaicrec.config import load_config

    _run(load_config(config), output)


@app.command()
def bandits(
    config: Annotated[Optional[Path], typer.Option("--config", help="a bandit run file (policies, rounds, "
                                                   "seeds; src/mosaicrec/configs/bandits.toml)")] = None,
    rounds: Annotated[Optional[int], typer.Option(min=100, max=1_000_000, help="rounds per seed "
                                                  "[default: the config's, else 5000]")] = None,
    seed: Annotated[Optional[list[int]], typer.Option(help="seeds (repeatable) [default: the config's, "
                                                      "else 0 1 2]")] = None,
    output: Annotated[Path, typer.Option("--out", help="report folder")] = Path("runs/bandits"),
) -> None:
    """Play bandit policies (random, greedy, ε-greedy, LinUCB, Thompson, or those of --config) on the
    Emotify simulator: cumulative-reward table, JSON and plot."""
    from mosaicrec.evaluation.bandit_sim import BanditRunConfig, load_bandit_config, run_emotify

    cfg = load_bandit_config(config) if config is not None else BanditRunConfig()
    cfg = cfg.model_copy(update={"rounds": rounds or cfg.rounds, "seeds": seed or cfg.seeds})
    out.print(run_emotify(cfg.seeds, cfg.rounds, output, cfg.name, err, config=cfg))
    out.print(f"report: {output}/{cfg.name}.md  plot: {output}/{cfg.name}.png")


@app.command()
def ope(
    model: Annotated[list[Path], typer.Option("--model", help="a target: folder written by `mosaicrec train` "
                                              "(repeatable)")],
    store: StoreOpt = None,
    threshold: Annotated[Optional[float], typer.Option(help="reward = an attributed event of at least this "
                                                       "weight [default: the first model's threshold, else 1]")] = None,
    policy: Annotated[Optional[str], typer.Option(help="only the lists this logging policy chose "
                                                  "(e.g. bandit:epsilon-greedy)")] = None,
    since: Annotated[Optional[float], typer.Option(help="only lists served from this Unix time on")] = None,
    boot: Annotated[int, typer.Option(min=0, max=10_000, help="bootstrap resamples")] = 200,
    output: Annotated[Optional[Path], typer.Option("--out", help="write the estimates as JSON here")] = None,
) -> None:
    """Off-policy evaluation on the service's impression log: each target model's value per shown slot
    (replay, IPS, self-normalised IPS, doubly robust; 95% bootstrap intervals), from the lists the service
    served and the rewards posted for them (events naming the list's request_id)."""
    from mosaicrec.data.store import Store, default_store_path
    from mosaicrec.evaluation.service_log import evaluate_on_log, read_impressions
    from mosaicrec.models import load_model
    from mosaicrec.models.training import TrainingInfo

    store_path = store or _model_store(model[0], None) or default_store_path()
    if not Path(store_path).exists():
        raise MosaicError(f"no store at {store_path}")
    info = TrainingInfo.load(model[0])
    rule = threshold if threshold is not None else (info.threshold if info.threshold is not None else 1.0)
    with Store(store_path, read_only=True) as st:
        log = read_impressions(st, rule, policy, since)
    if log.empty:
        raise MosaicError(f"the impression log of {store_path} has no lists" + (f" of policy {policy!r}" if policy
                                                                               else "") + ": serve some first")
    table = Table(title=f"off-policy value per shown slot: {log['request_id'].nunique():,} lists, {len(log):,} "
                        f"shown items, logged value {log['reward'].mean():.4f}")
    for col in ("target", "lists", "overlap", "replay", "ips", "snips", "dr"):
        table.add_column(col, justify="left" if col == "target" else "right")
    results = []
    for folder in model:
        ev = evaluate_on_log(log, load_model(folder), folder.name, n_boot=boot)
        results.append(ev.to_dict())
        cells = [f"{e.value:.4f} [{e.low:.4f}, {e.high:.4f}]" for e in
                 (ev.estimates.get(n) for n in ("replay", "ips", "snips", "dr")) if e is not None]
        table.add_row(folder.name, f"{ev.rounds:,}" + (f" ({ev.skipped_rounds:,} unknown users)"
                                                       if ev.skipped_rounds else ""), f"{ev.overlap:.3f}", *cells)
    out.print(table)
    out.print(f"rows logged with propensity < 1: {results[0]['stochastic_rows']:.0%} (only these let a target "
              "be credited for items the logger would not have shown itself)", highlight=False)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps({"threshold": rule, "policy": policy, "since": since, "targets": results},
                                     indent=2))
        out.print(f"estimates: {output}")


@app.command("ope-table")
def ope_table(
    which: Annotated[str, typer.Argument(help="simulation | emotify | kuairand")],
    seed: Annotated[Optional[list[int]], typer.Option(help="seeds (repeatable) [default: 0 1 2]")] = None,
    replications: Annotated[int, typer.Option(min=2, max=100_000, help="simulation: simulated logs")] = 200,
    top: Annotated[int, typer.Option(min=1, max=10_000, help="kuairand: the popular / BPR lists' length")] = 50,
    output: Annotated[Path, typer.Option("--out", help="report folder")] = Path("runs/ope"),
) -> None:
    """An off-policy evaluation table: the estimators on simulated logs with a known truth (bias, spread,
    RMSE), or policies estimated on Emotify's responses or KuaiRand's impressions with an estimated logger.
    Writes ope_<which>.json and .md."""
    from mosaicrec.evaluation import ope_tables

    if which not in ope_tables.TABLES:
        raise MosaicError(f"unknown table {which!r}; choose from {', '.join(ope_tables.TABLES)}")
    seeds = seed or [0, 1, 2]
    payload, table = (ope_tables.simulation_table(replications, err) if which == "simulation" else
                      ope_tables.emotify_table(seeds, err) if which == "emotify" else
                      ope_tables.kuairand_table(seeds, top, err))
    report = ope_tables.write_table(output, which, payload, table)
    out.print(table, highlight=False)
    out.print(f"report: {report}")


@app.command()
def demo(
    dataset: Annotated[Optional[str], typer.Option(help="built-in dataset [default: ml100k-multimodal "
                                                   "when ../shared is there, else movielens-100k]")] = None,
    store: StoreOpt = None,
    output: Annotated[Optional[Path], typer.Option("--out", help="report folder")] = None,
) -> None:
    """Ingest a real dataset into the store, evaluate six models, show a user's recommendations."""
    from mosaicrec.config import demo_config
    from mosaicrec.data.datasets import dataset_available

    if dataset is None:
        dataset = "ml100k-multimodal" if dataset_available("ml100k-multimodal")[0] else "movielens-100k"
    cfg = demo_config(dataset)
    cfg.dataset.store = str(store) if store else None
    result, data = _run(cfg, output, keep_models=True, use_store=True)
    best = max(result.rows, key=lambda r: r.metrics.get("ndcg@10", 0.0))
    from mosaicrec.ranking import recommend_for_user

    user = str(data.interactions.user_ids[0])
    recs = recommend_for_user(best.fitted, user, 5, items=data.items)
    out.print(f"\nTop 5 from {best.label} (best NDCG@10) for user {user}, trained on the split's train part:")
    for r in recs:
        out.print(f"  {r.rank}. {r.title}  [dim](item {r.item_id}, score {r.score:.3f})[/dim]")
    _demo_content(data, Path(store) if store else None)
    if data.name == "ml100k-multimodal":
        from mosaicrec.config import MULTIMODAL_CONFIG, load_config

        out.print("\nMultimodal models and cold start (content read back from the cache):")
        from mosaicrec.encoders import default_cache_path

        mm = load_config(MULTIMODAL_CONFIG)
        mm.dataset.store = cfg.dataset.store
        mm.content.cache = str(default_cache_path(store))  # the cache the demo just filled
        _run(mm, output / "multimodal" if output else None, use_store=True)


def _demo_content(data, store: Path | None) -> None:
    """Encode the demo catalog's content and show nearest neighbours per modality, so a person can judge
    the embeddings; with the shared data there, the Emotify clips show the audio side."""
    import numpy as np

    from mosaicrec.data.datasets import dataset_available, load_dataset
    from mosaicrec.data.store import default_store_path
    from mosaicrec.encoders import EmbeddingCache, default_cache_path, encode_items

    cache_path = default_cache_path(store or default_store_path())
    has_plots = any("description" in t for t in data.items["texts"])
    out.print(f"\nEncoding the content of {len(data.items)} items (cached in {cache_path}):")
    with EmbeddingCache(cache_path) as cache:
        result = encode_items(data.items, cache=cache, console=err,
                              text_fields=["title", "description"] if has_plots else None)
        for rep in result.reports:
            out.print("  " + rep.describe(), soft_wrap=True, highlight=False)
        content = result.content
        popular = np.argsort(-np.bincount(data.interactions.items, minlength=data.interactions.n_items),
                             kind="stable")
        index = {i: k for k, i in enumerate(content.item_ids)}
        probes = [index[data.interactions.item_ids[i]] for i in popular[:40]]
        probes = [p for p in probes if all(content.masks[m][p] for m in content.modalities)][:3]
        titles = data.items["title"].to_numpy()
        for name in content.modalities:
            table = Table(title=f"nearest items by {name} ({content.sources[name]})")
            table.add_column("item")
            table.add_column("its 3 nearest neighbours")
            for p in probes:
                top, sims = content.nearest(name, p, 3)
                table.add_row(titles[p], "; ".join(f"{titles[t]} ({s:.2f})" for t, s in zip(top, sims)))
            out.print(table)
        if dataset_available("emotify")[0]:
            clips = load_dataset("emotify").items
            audio = encode_items(clips, {"audio": _default_encoder("audio")}, cache=cache, console=err)
            out.print("  " + audio.reports[0].describe(), soft_wrap=True, highlight=False)
            genre = np.array([a.get("genre", "") for a in clips["attributes"]])
            c = audio.content
            sims = c.features["audio"] @ c.features["audio"].T
            np.fill_diagonal(sims, -np.inf)
            agree = float((genre[sims.argmax(1)] == genre).mean())
            table = Table(title=f"Emotify clips: nearest by audio ({c.sources['audio']}); the nearest clip has "
                                f"the same genre for {agree:.0%} of clips (chance 25%)")
            table.add_column("clip (genre)")
            table.add_column("its 3 nearest clips (genre, cosine)")
            for g in np.unique(genre):
                p = int(np.flatnonzero(genre == g)[0])
                top, s = c.nearest("audio", p, 3)
                table.add_row(f"{c.item_ids[p]} ({g})",
                              "; ".join(f"{c.item_ids[t]} ({genre[t]}, {v:.2f})" for t, v in zip(top, s)))
            out.print(table)


def _parse_fields(pairs: list[str] | None) -> dict[str, list[str]]:
    out = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        fields = [f.strip() for f in value.split(",") if f.strip()]
        if not sep or not name.strip() or not fields:
            raise MosaicError(f"--field expects NAME=FIELD1,FIELD2, got {pair!r}")
        out[name.strip()] = fields
    return out


def _catalog_content(items, store_path, encoder: list[str] | None, text_fields: list[str] | None,
                     fields: dict[str, list[str]] | None = None):
    """Encode a catalog through the cache beside the store: ``encoder`` entries are NAME=ENCODER, none
    means each modality's default encoder. Returns the content and each encoder's spec (name, params, key)."""
    from mosaicrec.encoders import EmbeddingCache, create_encoder, default_cache_path, encode_items
    from mosaicrec.encoders.stage import _resolve_encoders

    if encoder:
        pairs = [e.partition("=") for e in encoder]
        if any(not sep for _, sep, _ in pairs):
            raise MosaicError("--encoder expects NAME=ENCODER, e.g. text=minilm")
        encs = {name.strip(): create_encoder(enc.strip()) for name, _, enc in pairs}
    else:
        encs = _resolve_encoders(items, None)
    with EmbeddingCache(default_cache_path(store_path)) as cache:
        unknown = sorted(set(fields or {}) - set(encs))
        if unknown:
            raise MosaicError(f"--field names {unknown[0]!r}, which no --encoder makes")
        encoded = encode_items(items, encs, cache=cache, text_fields=text_fields, fields=fields, console=err)
    for rep in encoded.reports:
        err.print("  " + rep.describe(), soft_wrap=True, highlight=False)
    specs = {name: {**enc.spec(), "key": enc.key} for name, enc in encs.items()}
    return encoded.content, specs


def _default_encoder(modality: str):
    from mosaicrec.encoders import DEFAULT_ENCODERS, create_encoder

    return create_encoder(DEFAULT_ENCODERS[modality])


def _run(cfg, output: Path | None, keep_models: bool = False, use_store: bool = False):
    from mosaicrec.data.datasets import load_dataset
    from mosaicrec.data.store import Store
    from mosaicrec.evaluation.report import results_table, write_reports
    from mosaicrec.evaluation.runner import run_experiment

    source = cfg.dataset.name or cfg.dataset.source
    with err.status(f"loading {cfg.dataset.label()}"):
        if use_store or cfg.dataset.store:
            with Store(cfg.dataset.store) as st:
                data = load_dataset(source, store=st)
                err.print(f"store {st.path}: {st.counts()}")
        else:
            data = load_dataset(source)
    content = None
    if cfg.content is not None:
        from mosaicrec.encoders import encode_content

        encoded = encode_content(data.items, cfg.content, console=err)
        for rep in encoded.reports:
            err.print("  " + rep.describe(), soft_wrap=True, highlight=False)
        content = encoded.content
    folder = Path(output or Path(cfg.output_dir) / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    folder.mkdir(parents=True, exist_ok=True)
    # every finished (seed, model) record as a JSON line at once: an hour-long run stopped at 50 min keeps
    # its first 50 min (results.json is written at the end, from all seeds)
    with open(folder / "runs.jsonl", "w") as log:
        def on_run(label: str, record: dict) -> None:
            log.write(json.dumps({"label": label, **record}, default=str) + "\n")
            log.flush()

        if cfg.transfer is not None:
            from mosaicrec.evaluation.transfer import run_transfer, write_transfer_reports

            transfer = run_transfer(data, cfg.transfer, cfg.split, cfg.models, cfg.evaluation, content=content,
                                    seeds=cfg.seeds, name=cfg.name, config=cfg.model_dump(mode="json"),
                                    console=err, on_run=on_run)
            report = write_transfer_reports(transfer, folder, cfg.baseline)
            (folder / "config.json").write_text(json.dumps(cfg.model_dump(mode="json"), indent=2))
            out.print(report.read_text(), markup=False, highlight=False)
            extra = f"  plot: {folder}/transfer.png" if (folder / "transfer.png").exists() else ""
            out.print(f"report: {report}  results: {folder}/results.json{extra}")
            return transfer, data
        result = run_experiment(data, cfg.split, cfg.models, cfg.evaluation, name=cfg.name,
                                config=cfg.model_dump(mode="json"), console=err, keep_models=keep_models,
                                content=content, cold_start=cfg.cold_start, seeds=cfg.seeds, tuning=cfg.tuning,
                                baseline=cfg.baseline, on_run=on_run)
    out.print(results_table(result))
    write_reports(result, folder)
    (Path(folder) / "config.json").write_text(json.dumps(cfg.model_dump(mode="json"), indent=2))
    out.print(f"report: {folder}/report.md  results: {folder}/results.json  plot: {folder}/plot.png")
    return result, data


def _parse_params(pairs: list[str]) -> dict:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise MosaicError(f"--param expects key=value, got {pair!r}")
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    return params


def main() -> None:
    """Entry point: run the app, turning library errors into one line and an exit code."""
    debug = "--debug" in sys.argv
    try:
        app()  # standalone: usage errors and --help are handled (and exit) inside
    except (MosaicError, OSError) as e:
        if debug:
            raise
        err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
