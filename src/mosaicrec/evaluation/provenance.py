"""Where a result came from: the command that produced it, the commit it ran at, when and on what machine.

Every results file (an experiment's ``results.json``, a benchmark's ``<name>.json``, a bandit or OPE table)
carries this block, and the documentation's tables are rendered from those files with it
(``make docs-tables``), so each table names the command and commit that produced it: a number in the docs
is never typed by hand.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mosaicrec import __version__

#: the repository a run happened in (the source checkout, when mosaicrec runs from one)
ROOT = Path(__file__).resolve().parents[3]


def command_line(argv: list[str] | None = None) -> str:
    """The command as a person would type it again: ``mosaicrec …`` for the CLI, ``python path …`` for a
    script (its path relative to the repository)."""
    argv = list(sys.argv if argv is None else argv)
    if not argv:
        return ""
    first = Path(argv[0])
    if first.name in ("mosaicrec", "__main__.py") and ("cli" in first.parts or first.name == "mosaicrec"):
        return shlex.join(["mosaicrec", *argv[1:]])
    if first.suffix == ".py":
        try:
            first = first.resolve().relative_to(ROOT)
        except ValueError:
            pass
        return shlex.join(["python", str(first), *argv[1:]])
    return shlex.join(argv)


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance(argv: list[str] | None = None) -> dict[str, Any]:
    """The command, the commit (and whether the code differed from it: changes to the package, the
    benchmarks or the project file, not to the documentation the results are rendered into), the date and
    the machine."""
    commit = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no", "--", "src", "benchmarks",
                      "pyproject.toml")) if commit else None
    return {"command": command_line(argv), "commit": commit, "dirty": dirty, "mosaicrec": __version__,
            "date": time.strftime("%Y-%m-%d", time.gmtime()), "python": platform.python_version(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores"}


def write_result(folder: str | Path, stem: str, payload: dict[str, Any], table: str) -> Path:
    """``<stem>.json`` (the payload, its table and its provenance) and ``<stem>.md`` (the table) in
    ``folder``; returns the JSON file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.json"
    path.write_text(json.dumps({**payload, "table": table, "provenance": provenance()}, indent=2, default=str))
    (folder / f"{stem}.md").write_text(table)
    return path
