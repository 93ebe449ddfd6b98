# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
CORES ?= all
SNAKEMAKE := $(BIN)/snakemake

.PHONY: setup run smoke test report lint bench sync clean-results

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

run: setup
	$(SNAKEMAKE) --cores $(CORES)

smoke: setup
	$(SNAKEMAKE) --cores $(CORES) --configfile config/smoke.yaml

test: setup
	$(BIN)/pytest -q

report: setup
	$(SNAKEMAKE) --cores 1 --report results/report.html

lint: setup
	$(SNAKEMAKE) --lint
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/ruff check src tests
