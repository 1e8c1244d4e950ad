# The user's interface. `make help` lists every target, grids included.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
WORKERS ?= auto
STORAGE ?=
SEEDS ?=
DATA_DIR ?=
RUN_ARGS = --profile $(PROFILE) --workers $(WORKERS) $(if $(STORAGE),--storage $(STORAGE)) $(if $(SEEDS),--seeds $(SEEDS))
SPECS := $(shell find ablations -name '*.yaml' -not -path '*/sweeps/*' -not -name profiles.yaml 2>/dev/null | sort)

.DEFAULT_GOAL := help
.PHONY: help setup data test test-full lint format ablations report bench gpu-check dashboard clean-runs

help: ## list targets with one-line descriptions
	@grep -hE '^[a-zA-Z0-9_%-]+:.*## ' $(MAKEFILE_LIST) | sort | awk 'BEGIN {FS = ":.*## "} {printf "  %-36s %s\n", $$1, $$2}'
	@echo "  ablation grids (PROFILE=smoke|quick|paper WORKERS=N|auto STORAGE=url SEEDS=n):"
	@if [ -x $(PY) ]; then $(PY) -m experiments list ablations | sed 's/^/    /'; \
	 else for s in $(SPECS); do t=$${s#ablations/}; t=$${t%.yaml}; echo "    ablation-$${t//\//-}"; done; fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed ## create .venv and install the project with its dev extras

data: setup ## get Fashion-MNIST (Debian package when apt-get is usable as root, else a download into the cache)
	@if $(PY) -c "from experiments.run.data import DataConfig, load_fashion_mnist; load_fashion_mnist(DataConfig())" 2>/dev/null; then \
	  echo "Fashion-MNIST: found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ -z "$(DATA_DIR)" ]; then \
	  (apt-get install -y -q dataset-fashion-mnist || (apt-get update -q && apt-get install -y -q dataset-fashion-mnist)); \
	else \
	  $(PY) -c "from experiments.run.data import DataConfig, load_fashion_mnist; load_fashion_mnist(DataConfig(download=True))"; \
	fi
	@$(PY) -c "from experiments.run.data import DataConfig, load_fashion_mnist as f; tr, te, _ = f(DataConfig()); print('Fashion-MNIST:', len(tr), 'train /', len(te), 'test images')"

test: setup ## run the fast test suite (the one CI runs)
	$(PY) -m pytest -q

test-full: setup ## run every test, slow ones included
	$(PY) -m pytest -q -m "slow or not slow"

lint: setup ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

ablation-%: setup data ## run the grid ablations/<paper>/<table>.yaml (e.g. ablation-localvit-layers)
	$(PY) -m experiments run $(shell echo "$*" | sed -E 's#^([^-]+)-#ablations/\1/#').yaml $(RUN_ARGS)

ablations: setup data ## run every grid in ablations/
	@for s in $(SPECS); do $(PY) -m experiments run $$s $(RUN_ARGS) || exit $$?; done

# A paper's claims campaign: the claim cells of all its grids on their first seeds, then one
# round of extra seeds per grid per pass, breadth first, for the claims still open (the
# profile's seeds: batch, cap), until none is (experiments.run.campaign).
campaign-%: setup data ## claims campaign of one paper: claim cells only, seeds by precision (e.g. campaign-localvit)
	$(PY) -m experiments campaign $* --profile $(PROFILE) --workers $(WORKERS) $(if $(STORAGE),--storage $(STORAGE))

sweep-%: setup data ## run the Optuna sweep ablations/sweeps/<name>.yaml
	$(PY) -m experiments sweep ablations/sweeps/$*.yaml $(if $(STORAGE),--storage $(STORAGE)) $(if $(filter-out auto,$(WORKERS)),--workers $(WORKERS))

report: setup ## execute the notebooks on results/ and write results/REPORT.md
	$(PY) -m experiments report

bench: setup ## speed and memory figures, written under results/bench/
	$(PY) -m experiments bench

gpu-check: setup ## the GPU path (bf16, channels_last, compile, runs sharing a GPU) -> results/bench/gpu.csv
	$(PY) -m experiments.tools.gpu_check --grid ablations/localvit/layers.yaml

dashboard: setup ## optuna-dashboard on the run storage, bound to 127.0.0.1
	$(VENV)/bin/optuna-dashboard --host 127.0.0.1 $(if $(STORAGE),$(STORAGE),runs/optuna.journal)

clean-runs: ## delete checkpoints and the local run storage under runs/ (results/ is kept)
	rm -rf runs/
