"""The ``mosaicrec`` command line: parses options, calls one use case of :mod:`mosaicrec.app` per command,
prints. The commands live in one module per group: :mod:`.data` (datasets, encoders, knowledge graphs,
ingest, encode), :mod:`.models` (train, lists, export), :mod:`.service` (serve, retrain) and :mod:`.lab`
(evaluate, bandits, off-policy evaluation, the demo); this module holds the app, the options and printing
they share, and :func:`main`.

Errors are one line (``error: …``) with exit code 1; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
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


def _opt(help: str, *names: str, **kw) -> typer.models.OptionInfo:  # noqa: A002  (typer's own word)
    return typer.Option(*names, help=help, **kw)


StoreOpt = Annotated[Optional[Path], _opt("DuckDB store file [default: $MOSAICREC_HOME/store.duckdb, ./.mosaicrec]",
                                          "--store")]
ModelOpt = Annotated[Path, _opt("folder written by `mosaicrec train`", "--model")]
KOpt = Annotated[int, _opt("list length", "-k", min=1, max=1000)]
Repeat = Optional[list[str]]
OutFolder = Annotated[Path, _opt("report folder", "--out")]
Params = Annotated[Repeat, _opt("hyper-parameter as key=value (repeatable)")]
TextFields = Annotated[Repeat, _opt("item text fields text encoders read")]
Seeds = Annotated[Optional[list[int]], _opt("seeds (repeatable) [default: 0 1 2, or the config's]")]


def _print_version(value: bool) -> None:
    if value:
        out.print(f"mosaicrec {__version__}")
        raise typer.Exit()


@app.callback()
def _root(debug: Annotated[bool, _opt("show tracebacks", "--debug")] = False,
          version: Annotated[bool, _opt("print the version", "--version", is_eager=True,
                                        callback=_print_version)] = False) -> None:
    """Global options (``--debug`` is read by :func:`main`)."""


def _say(text: str) -> None:
    out.print(text, soft_wrap=True, highlight=False)


def _admin_key(server: str, api_key_file: Path | None, what: str) -> str:
    """The admin key for asking a running service (from the file or $MOSAICREC_API_KEYS), the server URL
    checked first; a :class:`MosaicError` saying where to put one when there is none."""
    from mosaicrec.app.retrain import check_server_url
    from mosaicrec.serving.auth import load_keys

    check_server_url(server)
    admin = next((k for k, kind in load_keys(api_key_file).items() if kind == "admin"), None)
    if admin is None:
        raise MosaicError(f"{what} needs an admin key: --api-key-file FILE with a KEY:admin line, or "
                          "$MOSAICREC_API_KEYS")
    return admin


def _table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    out.print(table)


def _print_items(title: str, items, note: str | None = None) -> None:
    rows = [[str(rank), e.item_id, e.title, f"{e.score:.4f}", e.explanation or ""] for rank, e in enumerate(items, 1)]
    _table(title, ["#", "item", "title", "score", "why"], rows)
    if note:
        _say(note)


def main() -> None:
    """Entry point: run the app, turning library errors into one line and an exit code."""
    from mosaicrec.cli import data, models, service, lab  # noqa: F401,I001  (each registers its commands, in this order)

    debug = "--debug" in sys.argv
    try:
        app()  # standalone: usage errors and --help are handled (and exit) inside
    except (MosaicError, OSError) as e:
        if debug:
            raise
        # escaped: a message naming a config section ("add a [content] section") is text, not markup
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("[red]interrupted[/red]", highlight=False)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001  a bug, but still one line: the traceback is one flag away
        if debug:
            raise
        first = (str(e).strip().splitlines() or [""])[0][:300]
        err.print(f"[red]error:[/red] unexpected {type(e).__name__}: {escape(first)} "
                  "(run with --debug for the traceback)",
                  highlight=False, soft_wrap=True)
        sys.exit(1)

