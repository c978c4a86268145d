"""The pipeline's stages import one way: a lower stage never imports a higher one."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mosaicrec"
ORDER = ["data", "encoders", "fusion", "models", "ranking", "serving", "evaluation"]


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
    for path in (SRC / stage).rglob("*.py"):
        bad = imported_stages(path) - allowed
        assert not bad, f"{path.relative_to(SRC)} imports higher stage(s) {sorted(bad)}"
