"""The ``mosaicrec`` command line: parses options, calls one library function per command, prints.

Errors are one line (``error: …``) with exit code 1; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import json
import sys
import time
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
) -> None:
    """Validate data files and write them to the store (transactional, idempotent)."""
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
    with Store(store) as st:
        t0 = time.perf_counter()
        result, reports = ingest_source(st, src, on_error=on_error, rejects_dir=rejects_dir)
        for rep in reports:
            out.print(rep.describe())
        out.print(f"stored in {st.path}: {result.describe()} in {time.perf_counter() - t0:.1f}s; "
                  f"store now holds {st.counts()}")


@app.command()
def train(
    model: Annotated[str, typer.Option(help="registered model name, e.g. ease, als, bpr")],
    output: Annotated[Path, typer.Option("--out", help="folder to save the model in")],
    param: Annotated[Optional[list[str]], typer.Option(help="hyper-parameter as key=value (repeatable)")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="ingest this built-in dataset first")] = None,
    store: StoreOpt = None,
    threshold: Annotated[Optional[float], typer.Option(help="ratings ≥ this are positives "
                                                       "[default: top quarter of the rating scale]")] = None,
    encoder: Annotated[Optional[list[str]], typer.Option(
        help="content models: NAME=ENCODER per content feature, e.g. text=minilm (repeatable) "
             "[default: the default encoder of each modality the catalog has]")] = None,
    text_fields: Annotated[Optional[list[str]], typer.Option(help="item text fields text encoders read")] = None,
) -> None:
    """Train a model on everything in the store and save it (content models encode the catalog first,
    through the embedding cache)."""
    from mosaicrec.data.datasets import ingest_source, resolve_source
    from mosaicrec.data.store import Store
    from mosaicrec.models.training import fit_on_dataset

    params = _parse_params(param or [])
    with Store(store) as st:
        if dataset:
            ingest_source(st, resolve_source(dataset))
        data = st.load_dataset()
        store_path = st.path
    if data.interactions.n_events == 0:
        raise MosaicError(f"the store {store_path} holds no events; run `mosaicrec ingest` first")
    content = None
    from mosaicrec.models import MODELS

    if model in MODELS and MODELS[model].needs_content:
        content = _catalog_content(data.items, store_path, encoder, text_fields)
    with err.status(f"training {model} on {data.interactions.n_events} events"):
        t0 = time.perf_counter()
        fitted = fit_on_dataset(data, model, params, threshold, content=content)
        seconds = time.perf_counter() - t0
    fitted.save(output)
    (output / "source.json").write_text(json.dumps({"store": str(Path(store_path).resolve()),
                                                     "dataset": data.name}))
    out.print(f"trained {fitted!r} in {seconds:.2f}s on {data.name}; saved to {output}")


@app.command()
def recommend(
    user: Annotated[str, typer.Option(help="external user id")],
    model_dir: Annotated[Path, typer.Option("--model", help="folder written by `mosaicrec train`")],
    k: Annotated[int, typer.Option("-k", min=1, help="list length")] = 10,
    store: StoreOpt = None,
    include_seen: Annotated[bool, typer.Option(help="also list items the user already has")] = False,
    scenario: Annotated[Optional[str], typer.Option(help="rank in this context (context models)")] = None,
) -> None:
    """Print a user's top-k recommendations with titles."""
    from mosaicrec.data.store import Store
    from mosaicrec.models import load_model
    from mosaicrec.ranking import recommend_for_user

    fitted = load_model(model_dir)
    if store is None and (model_dir / "source.json").exists():
        store = Path(json.loads((model_dir / "source.json").read_text())["store"])
    with Store(store, read_only=True) as st:
        catalog = st.load_dataset().items
    recs = recommend_for_user(fitted, user, k, items=catalog, exclude_seen=not include_seen, context=scenario)
    where = f" in {fitted.context_key} {scenario}" if scenario else ""
    table = Table(title=f"top {k} for user {user}{where} ({fitted.name})")
    for col, just in (("#", "right"), ("item", "left"), ("title", "left"), ("score", "right")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in recs:
        table.add_row(str(r.rank), r.item_id, r.title, f"{r.score:.4f}")
    out.print(table)


@app.command()
def serve(
    model_dir: Annotated[Path, typer.Option("--model", help="folder written by `mosaicrec train`")],
    store: StoreOpt = None,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    api_key: Annotated[Optional[list[str]], typer.Option(
        help="KEY:read or KEY:write (repeatable) [default: $MOSAICREC_API_KEYS, comma-separated]")] = None,
    encoder: Annotated[Optional[list[str]], typer.Option(
        help="content NAME=ENCODER for similar items, search and new items [default: each modality's "
             "default encoder]")] = None,
    text_fields: Annotated[Optional[list[str]], typer.Option(help="item text fields text encoders read")] = None,
    rate_limit: Annotated[float, typer.Option(help="requests per second per key")] = 1000.0,
    retrieval: Annotated[str, typer.Option(help="auto | exact | ann (HNSW over the model's item vectors; "
                                           "auto: from 50,000 items)")] = "auto",
    content_file: Annotated[Optional[Path], typer.Option(
        "--content", help="item content .npz written by `mosaicrec encode` (skips encoding)")] = None,
) -> None:
    """Serve recommendations, similar items, search, new items, events and erasure over HTTP
    (OpenAPI docs at /docs)."""
    import os

    import uvicorn

    from mosaicrec.data.store import Store
    from mosaicrec.models import load_model
    from mosaicrec.serving.app import create_app
    from mosaicrec.serving.service import Service

    specs = api_key or [k for k in os.environ.get("MOSAICREC_API_KEYS", "").split(",") if k]
    keys = {}
    for spec in specs:
        key, _, kind = spec.rpartition(":")
        if not key or kind not in ("read", "write"):
            raise MosaicError(f"--api-key expects KEY:read or KEY:write, got {spec!r}")
        keys[key] = kind
    if not keys:
        raise MosaicError("give at least one --api-key KEY:write (or set MOSAICREC_API_KEYS)")
    fitted = load_model(model_dir)
    if store is None and (model_dir / "source.json").exists():
        store = Path(json.loads((model_dir / "source.json").read_text())["store"])
    with Store(store, read_only=True) as st:
        data = st.load_dataset()
        store_path = st.path
    if content_file is not None:
        from mosaicrec.data.content import ItemContent

        content = ItemContent.load(content_file)
    else:
        content = _catalog_content(data.items, store_path, encoder, text_fields)
    from mosaicrec.models.training import default_threshold

    service = Service(fitted, store_path, content, positive_threshold=default_threshold(data), retrieval=retrieval)
    err.print(f"serving {fitted.name} over {len(service.item_ids)} items ({service.retrieval} retrieval) on "
              f"http://{host}:{port} (docs: /docs)")
    uvicorn.run(create_app(service, keys, rate_limit=rate_limit, burst=2 * rate_limit, model_dir=str(model_dir)),
                host=host, port=port,
                log_level="warning", access_log=False)


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


def _catalog_content(items, store_path, encoder: list[str] | None, text_fields: list[str] | None):
    """Encode a catalog through the cache beside the store: ``encoder`` entries are NAME=ENCODER, none
    means each modality's default encoder."""
    from mosaicrec.encoders import EmbeddingCache, create_encoder, default_cache_path, encode_items

    encs = None
    if encoder:
        pairs = [e.partition("=") for e in encoder]
        if any(not sep for _, sep, _ in pairs):
            raise MosaicError("--encoder expects NAME=ENCODER, e.g. text=minilm")
        encs = {name: create_encoder(enc) for name, _, enc in pairs}
    with EmbeddingCache(default_cache_path(store_path)) as cache:
        encoded = encode_items(items, encs, cache=cache, text_fields=text_fields, console=err)
    for rep in encoded.reports:
        err.print("  " + rep.describe(), soft_wrap=True, highlight=False)
    return encoded.content


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
    result = run_experiment(data, cfg.split, cfg.models, cfg.evaluation, name=cfg.name,
                            config=cfg.model_dump(mode="json"), console=err, keep_models=keep_models,
                            content=content, cold_start=cfg.cold_start)
    out.print(results_table(result))
    folder = output or Path(cfg.output_dir) / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
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
