# Two commands for a newcomer: `make demo` (install + the whole DAG on the embedded synthetic stand-ins) and
# `make test` (install if needed + the test suite). Everything installs into .venv from exact pins.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CORES ?= $(shell nproc)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DVC_NO_ANALYTICS := 1
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install demo test test-slurm test-fast dag lock clean-demo

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	@git config diff.starcache.textconv "$(abspath $(BIN))/star-repro descriptions textconv" 2>/dev/null || true
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/star-repro dag --check
	$(BIN)/star-repro warm -- $(BIN)/snakemake --workflow-profile workflow/profiles/default --cores $(CORES)
	$(BIN)/star-repro sync dvc
	$(BIN)/star-repro summary

test: install
	$(BIN)/python -m pytest -q -m "not slurm"

# The real one-node SLURM cluster test (installs Debian's slurm-wlm and munge when missing; needs root).
test-slurm: install
	$(BIN)/python -m pytest -q -m slurm

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not slurm"

dag: install
	$(BIN)/star-repro dag --write

# Refresh the lock file after changing a pin in pyproject.toml.
lock: install
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^star-repro' > constraints.txt

clean-demo:
	rm -rf data/synthetic data/processed data/descriptions data/embeddings data/pretrain data/checkpoints data/cache \
	       data/stage_params runs results stats benchmarks logs .snakemake .dvc/cache .dvc/tmp
