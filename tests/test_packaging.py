"""Packaging: the project installs with pip from its own folder (no make), the installed package carries its
page, configs and templates, and the Dockerfile installs what the Makefile does."""

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_built_wheel_carries_every_data_file_and_runs_from_site_packages(tmp_path):
    source = tmp_path / "source"  # a copy: setuptools writes build/ beside the sources it builds
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("mosaicrec-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    data = [p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src" / "mosaicrec").rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert data and not [d for d in data if d not in names]  # e.g. serving/ui/app.js, configs/*.toml
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    probe = ("import mosaicrec, pathlib; from mosaicrec.config import load_config, MULTIMODAL_CONFIG; "
             "from mosaicrec.serving.routes import ui; "
             "assert pathlib.Path(mosaicrec.__file__).is_relative_to(pathlib.Path(r'%s')), mosaicrec.__file__; "
             "load_config(MULTIMODAL_CONFIG); print(ui._template().render(version='x')[:15])" % site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("<!doctype html>")


def _pins(text: str) -> set[str]:
    return set(re.findall(r"\b[a-z0-9_.-]+==[0-9][0-9a-z.]*", text))


def test_the_dockerfile_installs_what_the_makefile_does():
    make = (ROOT / "Makefile").read_text()
    docker = (ROOT / "Dockerfile").read_text()
    recipe = make[make.index("$(STAMP): pyproject.toml"):make.index("setup: $(STAMP)")]
    # tools that only check or measure the product (obp, the off-policy reference) stay out of the image
    recipe = "\n".join(ln for ln in recipe.splitlines() if "# bench only" not in ln)
    assert _pins(recipe) == _pins(docker)  # torch==2.13.0 and the --no-deps weight packages
    no_deps = {ln.split("--no-deps", 1)[1].split()[0] for ln in recipe.splitlines() if "--no-deps" in ln}
    assert all(f"--no-deps {p}" in docker for p in no_deps)
    extras = lambda s: set(re.search(r'"?\.\[([a-z,]+)\]"?', s).group(1).split(","))  # noqa: E731
    # the image has the runtime extras; dev (tests), bench (peers) and docs (the site) stay out of it
    assert extras(docker) == extras(recipe) - {"dev", "bench", "docs"}
    assert docker.index("torch==2.13.0") < docker.index('pip install ".[')  # torch before the package
    assert "kg fetch" in recipe and "kg fetch" in docker
