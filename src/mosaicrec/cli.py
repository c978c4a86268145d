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
) -> None:
    """Train a model on everything in the store and save it."""
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
    with err.status(f"training {model} on {data.interactions.n_events} events"):
        t0 = time.perf_counter()
        fitted = fit_on_dataset(data, model, params, threshold)
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
    recs = recommend_for_user(fitted, user, k, items=catalog, exclude_seen=not include_seen)
    table = Table(title=f"top {k} for user {user} ({fitted.name})")
    for col, just in (("#", "right"), ("item", "left"), ("title", "left"), ("score", "right")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in recs:
        table.add_row(str(r.rank), r.item_id, r.title, f"{r.score:.4f}")
    out.print(table)


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
    result = run_experiment(data, cfg.split, cfg.models, cfg.evaluation, name=cfg.name,
                            config=cfg.model_dump(mode="json"), console=err, keep_models=keep_models)
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
