"""The documentation: the README is the front door, the site builds with --strict, and every results table
is generated from a results file naming the command and commit that produced it (the bandit table is run
again here and must match to the printed digits)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("MOSAICREC_DATA_ROOT", ROOT.parent / "shared" / "datasets"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import docs_tables  # noqa: E402


def test_the_readme_is_the_front_door():
    readme = (ROOT / "README.md").read_text()
    lines = readme.splitlines()
    assert len(lines) <= 250
    commands = [ln for ln in lines[:12] if ln.startswith("make ")]
    assert [c.split()[1] for c in commands] == ["demo", "test"]
    assert "docs/" in readme and "benchmarks/tables.toml" in readme


@pytest.mark.skipif(shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None,
                    reason="mkdocs is not installed (pip install '.[docs]')")
def test_the_site_builds_strict(tmp_path):
    done = subprocess.run([str(Path(sys.executable).parent / "mkdocs"), "build", "--strict", "--site-dir",
                           str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    page = (tmp_path / "site" / "reference" / "ranking" / "index.html").read_text()
    assert "Pipeline" in page and "ItemList" in page  # the API reference is read from the docstrings
    bandits = (tmp_path / "site" / "benchmarks" / "bandits" / "index.html").read_text()
    assert "Produced by" in bandits  # the generated table is on the page


def test_every_results_table_has_a_page_naming_its_command():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "docs_tables.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    ids = [t["id"] for t in docs_tables.tables()]
    assert len(ids) == len(set(ids))
    pages = "".join(p.read_text() for p in (ROOT / "docs" / "benchmarks").glob("*.md"))
    assert all(f'tables/{i}.md"' in pages for i in ids)  # every table is on a page


def test_a_table_is_rendered_with_its_command_and_commit():
    table = {"id": "x", "command": "mosaicrec bandits --config c.toml", "results": "r.json", "minutes": 1}
    results = {"table": "| a |\n|---|\n| 1 |\n", "provenance": {
        "command": "mosaicrec bandits --config c.toml", "commit": "0123456789abcdef", "dirty": False,
        "date": "2026-12-07", "machine": "x86_64, 2 cores", "python": "3.11.7", "mosaicrec": "0.1.0"}}
    page = docs_tables.render(table, results)
    assert "| 1 |" in page and "`mosaicrec bandits --config c.toml`" in page and "`0123456789`" in page
    assert "uncommitted" not in page
    results["provenance"]["dirty"] = True
    assert "with uncommitted changes" in docs_tables.render(table, results)


@pytest.mark.skipif(not (SHARED / "emotify").is_dir(), reason=f"needs {SHARED / 'emotify'}")
def test_the_bandit_table_reproduces_to_the_printed_digits(tmp_path):
    table = next(t for t in docs_tables.tables() if t["id"] == "bandits")
    argv = docs_tables.argv_of(table["command"].replace("--out benchmarks/results", f"--out {tmp_path}"))
    env = {**os.environ, "MOSAICREC_HOME": str(ROOT / ".mosaicrec")}  # the embedding cache make demo fills
    subprocess.run(argv, cwd=ROOT, check=True, capture_output=True, timeout=900, env=env)
    again = json.loads((tmp_path / "bandits.json").read_text())["table"].strip()
    page = (ROOT / "docs" / "benchmarks" / "tables" / "bandits.md").read_text()
    assert again in page, f"a rerun gives\n{again}\nthe docs say\n{page}"
