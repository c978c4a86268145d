"""The pipeline's stages import one way: a lower stage never imports a higher one; above them the config
files, then the use cases (``app``), then the command line, which nothing imports."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mosaicrec"
ORDER = ["data", "encoders", "fusion", "models", "ranking", "serving", "evaluation", "config", "app", "cli"]


def _files(stage: str) -> list[Path]:
    folder = SRC / stage
    return sorted(folder.rglob("*.py")) if folder.is_dir() else [SRC / f"{stage}.py"]


def imported_stages(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mosaicrec."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("mosaicrec.")}
    return names & set(ORDER)


@pytest.mark.parametrize("stage", ORDER)
def test_stage_imports_only_lower_stages(stage):
    allowed = set(ORDER[: ORDER.index(stage) + 1])
    files = _files(stage)
    assert all(p.is_file() for p in files) and files, stage
    for path in files:
        bad = imported_stages(path) - allowed
        assert not bad, f"{path.relative_to(SRC)} imports higher stage(s) {sorted(bad)}"


def test_every_module_belongs_to_a_stage():
    staged = {p for stage in ORDER for p in _files(stage)}
    shared = {SRC / "__init__.py", SRC / "errors.py", SRC / "registry.py"}  # below every stage
    assert {p for p in SRC.rglob("*.py")} - staged - shared == set()
    for path in shared:
        assert not imported_stages(path), f"{path.name} must import no stage"
