# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
CORES ?= all
SNAKEMAKE := $(BIN)/snakemake

.PHONY: setup lock run smoke fashion paper test report lint bench sync clean-results wandb-reports browser datasets

# requirements.lock pins every package to the version tested (pyproject.toml only bounds them): make setup
# installs it, then normlab itself (editable, no dependencies). torch's CUDA libraries are not in it: torch's
# Linux wheel pulls those it requires, its CPU build none. TORCH_INDEX installs the locked torch and
# torchvision from another index first, e.g. the CPU build (a venv under 2 GB instead of about 7):
#   make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu
LOCK := requirements.lock
TORCH_INDEX ?=

$(VENV)/.installed: pyproject.toml $(LOCK)
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q $$(grep -E '^pip==' $(LOCK))
	$(if $(TORCH_INDEX),$(BIN)/pip install -q --no-deps --index-url $(TORCH_INDEX) $$(grep -E '^torch(vision)?==' $(LOCK)))
	$(BIN)/pip install -q -r $(LOCK)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

setup: $(VENV)/.installed

# Rewrite requirements.lock from the venv, once a change of versions has passed make test there (pip freeze:
# every installed package but normlab and torch's CUDA libraries). tests/test_install.py checks the result:
# each dependency of pyproject.toml pinned, within its bounds, and installed at that version.
lock:
	@{ echo "# The exact versions normlab is tested with (Linux x86_64, Python 3.11), installed by make setup:"; \
	  echo "#   pip install -r $(LOCK) && pip install --no-deps -e ."; \
	  echo "# Written by make lock (pip freeze of the tested venv); do not edit. Left out: torch's CUDA libraries"; \
	  echo "# (nvidia-*, cuda-*, triton; torch's Linux wheel requires them, most pinned exactly, its CPU build"; \
	  echo "# none) and local version labels (torch==2.14.1 is also what a +cpu build satisfies)."; \
	  $(BIN)/pip freeze --all --exclude-editable | grep -viE '^(nvidia-|cuda-|triton==)' | \
	    sed -E 's/^([^=]+==[^+]+)\+.*/\1/'; } > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)

run: setup
	$(SNAKEMAKE) --cores $(CORES)

smoke: setup
	$(SNAKEMAKE) --cores $(CORES) --configfile config/smoke.yaml

# Every study on real images (Fashion-MNIST, conv nets; CPU, under an hour on 2 cores): config/fashion.yaml.
fashion: setup datasets
	$(SNAKEMAKE) --cores $(CORES) --configfile config/fashion.yaml

# The papers' scale (CIFAR-10, VGG / PreResNet32) on a CUDA machine: config/paper.yaml, one GPU job at a time
# (gpu=1; raise it to the number of GPUs). Each job's log prints its throughput (images/s, peak GPU memory).
paper: setup
	$(SNAKEMAKE) --cores $(CORES) --resources gpu=1 --configfile config/paper.yaml

test: setup browser datasets
	$(BIN)/pytest -q

report: setup
	$(SNAKEMAKE) --cores 1 --report results/report.html

# Upload the offline W&B runs: every study's latest version and the dataset runs (resources/), or
# one study: make sync STUDY=bn_placement [VERSION=<version>]. Of each run id only the newest folder
# is uploaded (a resumed job's folder holds its whole run); already synced folders are skipped. Then every
# uploaded training run is tagged with each config and version on disk that read it (normlab.tracking --label).
STUDY ?= *
VERSION ?= latest
sync: setup
	@dirs="$$($(BIN)/python -m normlab.tracking results/$(STUDY)/$(VERSION) resources)"; \
	  if [ -z "$$dirs" ]; then echo "no offline W&B runs under results/$(STUDY)/$(VERSION)/wandb/ or resources/wandb/"; exit 1; fi; \
	  echo "$(BIN)/wandb sync <$$(echo "$$dirs" | wc -l) offline runs>"; \
	  $(BIN)/wandb sync $$dirs && $(BIN)/python -m normlab.tracking --label results/*/*-????????

# W&B Reports of every study (online, after `make sync`); offline it says what to do.
wandb-reports: setup
	$(SNAKEMAKE) --cores 1 wandb_reports

# Fashion-MNIST from Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist), read offline
# by the fashion_mnist dataset and its test; idempotent, never fails (without apt the test skips).
datasets:
	@test -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz || \
	  (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist > /dev/null 2>&1 || \
	   (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist > /dev/null)) || \
	  echo "dataset-fashion-mnist could not be installed: the Fashion-MNIST test will be skipped or fail"

# Headless Chromium (Debian package) for the report test's screenshot; idempotent, never fails.
browser:
	@command -v chromium > /dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null) || \
	  echo "chromium could not be installed: the report screenshot test will be skipped"

# Old result versions: lists them; `make clean-results YES=1` removes them. Keeps each study's
# `latest` and the newest version of each config name (default, smoke, fashion, paper, ...).
clean-results: setup
	$(BIN)/python -m normlab.clean --results results $(if $(YES),--yes,)

lint: setup
	$(SNAKEMAKE) --lint
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/ruff check src tests

# Engine benchmark (ensemble vs a plain PyTorch loop, FLOP/s, probe costs, start-up): results/bench/*.json
bench: setup
	$(BIN)/python bench/run_bench.py --out results/bench
