"""Commands over models: train, a user's list, similar items, search, export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mosaicrec.cli import KOpt, ModelOpt, Params, Repeat, StoreOpt, TextFields, _opt, _print_items, _say, app, err
from mosaicrec.errors import MosaicError


@app.command()
def train(
    model: Annotated[str, _opt("registered model name, e.g. ease, als, bpr")],
    output: Annotated[Path, _opt("folder to save the model in", "--out")],
    param: Params = None,
    dataset: Annotated[Optional[str], _opt("ingest this built-in dataset first")] = None,
    store: StoreOpt = None,
    snapshot: Annotated[Optional[Path], _opt("train on a store snapshot (written by a running service's retrain, "
                                             "or Store.export_snapshot) instead of the store, which a running "
                                             "service holds")] = None,
    threshold: Annotated[Optional[float], _opt("weights ≥ this are likes [default: the store's like rule, "
                                               "declared at ingest]")] = None,
    encoder: Annotated[Repeat, _opt("content models: NAME=ENCODER per content feature, e.g. text=minilm "
                                    "(repeatable) [default: the default encoder of each modality the catalog "
                                    "has]")] = None,
    text_fields: TextFields = None,
    field: Annotated[Repeat, _opt("NAME=F1,F2: the text fields (or attributes) one content feature reads, e.g. "
                                  "crew=director,writer,cast,genres (repeatable)")] = None,
    encoder_param: Annotated[Repeat, _opt("NAME.key=value: a parameter of one content feature's encoder, e.g. "
                                          "video.frames=color-texture (repeatable)")] = None,
) -> None:
    """Train a model on everything in the store (or a snapshot of it) and save it with its training record:
    the like threshold, when the data was read, and the encoders of content models (whose content is saved
    beside the model, so that serving starts without encoding). Shows each epoch and its loss."""
    from mosaicrec.app.encode import parse_params
    from mosaicrec.app.training import TrainRequest, train_servable

    req = TrainRequest(model, output, parse_params(param or []), dataset, store, snapshot, threshold, encoder,
                       text_fields, _parse_fields(field), _encoder_params(encoder_param))
    with _EpochProgress(model) as progress:
        done = train_servable(req, on_epoch=progress.update, console=err)
    _say(f"{done.describe()}; saved to {output}")


def _encoder_params(entries: list[str] | None) -> dict[str, dict]:
    """``NAME.key=value`` entries as feature name → parameters."""
    from mosaicrec.app.encode import parse_params

    out: dict[str, dict] = {}
    for key, value in parse_params(entries or []).items():
        name, dot, param = key.partition(".")
        if not dot or not name or not param:
            raise MosaicError(f"--encoder-param expects NAME.key=value, got {key!r}")
        out.setdefault(name, {})[param] = value
    return out


def _parse_fields(pairs: list[str] | None) -> dict[str, list[str]]:
    found = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        fields = [f.strip() for f in value.split(",") if f.strip()]
        if not sep or not name.strip() or not fields:
            raise MosaicError(f"--field expects NAME=FIELD1,FIELD2, got {pair!r}")
        found[name.strip()] = fields
    return found


class _EpochProgress:
    """A progress bar with the epoch and its loss while a model trains (a spinner for closed-form ones)."""

    def __init__(self, model: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[loss]}"), TimeElapsedColumn(), console=err)
        self.task = self.progress.add_task(f"training {model}", total=None, loss="")

    def update(self, record: dict) -> None:
        loss = next((f"{k} {record[k]:.4f}" for k in ("loss", "train_rmse") if k in record), "")
        if not loss and "correct" in record:
            loss = f"pairs ranked right {record['correct']:.3f}"
        epoch = record.get("epoch", record.get("iteration", 0)) + 1
        self.progress.update(self.task, total=record.get("total"), completed=epoch, loss=loss)
        if not self.progress.console.is_terminal:  # a log: one line per epoch instead of a redrawn bar
            err.print(f"  epoch {epoch}/{record.get('total')} {loss} ({record.get('seconds', 0):.2f}s)",
                      highlight=False)

    def __enter__(self) -> _EpochProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()


@app.command()
def recommend(
    user: Annotated[str, _opt("external user id")],
    model_dir: ModelOpt,
    k: KOpt = 10,
    store: StoreOpt = None,
    include_seen: Annotated[bool, _opt("also list items the user already liked (never ones they disliked)")]
        = False,
    scenario: Annotated[Optional[str], _opt("rank in this context (context models)")] = None,
) -> None:
    """Print a user's top-k, by the same rules as the API's list."""
    from mosaicrec.app.listing import open_pipeline

    with open_pipeline(model_dir, store) as service:
        got = service.recommend(user, k, exclude_seen=not include_seen, scenario=scenario)
        where = f" in {service.model.context_key} {scenario}" if scenario else ""
    note = f"user {user} has no likes to go on: the popular items (cold start)" if got.cold_start else None
    _print_items(f"top {k} for user {user}{where} ({got.model})", got.items, note)


@app.command()
def similar(
    item: Annotated[str, _opt("external item id")],
    model_dir: ModelOpt,
    k: KOpt = 10,
    modality: Annotated[Optional[str], _opt("one modality (text, image, audio) instead of all")] = None,
    store: StoreOpt = None,
) -> None:
    """Print the items most like one item, by content (encoded through the cache if not saved)."""
    from mosaicrec.app.listing import open_pipeline

    with open_pipeline(model_dir, store, need_content=True, console=err) as service:
        _print_items(f"items like {item}", service.similar(item, k, modality))


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="what to look for, in words")],
    model_dir: ModelOpt,
    k: KOpt = 10,
    user: Annotated[Optional[str], _opt("break ties towards this user's taste")] = None,
    store: StoreOpt = None,
) -> None:
    """Print the items nearest in meaning to a text query (image- and audio-only items too)."""
    from mosaicrec.app.listing import open_pipeline

    with open_pipeline(model_dir, store, need_content=True, console=err) as service:
        _print_items(f"search: {query}", service.search(query, k, user))


@app.command()
def export(
    model_dir: ModelOpt,
    output: Annotated[Path, _opt("a .parquet or .csv file, or a folder for Parquet parts (always with "
                                 "--workers)", "--out")],
    k: KOpt = 10,
    users: Annotated[Optional[Path], _opt("a file with one user id per line [default: every user the model or "
                                          "the store knows, erased users left out]")] = None,
    scenario: Annotated[Optional[str], _opt("rank in this context (context models)")] = None,
    store: StoreOpt = None,
    workers: Annotated[int, _opt("make the lists on this many Ray workers (Ray Data) and write --out as a folder "
                                 "of Parquet parts [0: in this process]", min=0, max=4096)] = 0,
    ray_address: Annotated[Optional[str], _opt("Ray cluster for --workers [default: $MOSAICREC_RAY_ADDRESS, else "
                                               "a local one]")] = None,
) -> None:
    """Write every user's top-k (user_id, rank, item_id, score, cold_start) by the API's rules: live likes
    folded in, dislikes left out, erasures honoured. In this process and on Ray workers the same pipeline
    runs on the same snapshot of the store, so both write the same rows."""
    from mosaicrec.app.export import export as run

    with err.status("listing every user" + (f" on {workers} Ray workers" if workers else "")):
        done = run(model_dir, output, k, users=users, scenario=scenario, store=store, workers=workers,
                   ray_address=ray_address)
    parts = f" in {done.files} Parquet parts" if done.files > 1 or done.workers else ""
    _say(f"wrote {done.rows:,} rows for {done.users:,} users{parts} to {done.folder}")
