# Verb-first targets; papers are discovered from */train.py, so a new paper needs no edit here.
# `make help` lists the targets. Every target installs the environment on first use.

SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PAPERS := $(sort $(patsubst %/train.py,%,$(wildcard */train.py)))
# EXP=<name> adds <paper>/configs/exp/<name>.yaml; ARGS= passes extra CLI arguments through.
EXP ?=
ARGS ?=
CKPT ?=
exp_config = $(if $(EXP),--config $(1)/configs/exp/$(EXP).yaml)
export WANDB_MODE ?= offline
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

# Per-paper targets are pattern rules (make skips pattern rules for .PHONY targets, so they are not listed).
.PHONY: help setup test test-fast lint format demo bench bench-quick report toy-data clean-runs
# A per-paper target for a folder without train.py stops with the list of papers.
is_paper = $(if $(filter $(1),$(PAPERS)),,$(error "$(1)" is not a paper folder; papers: $(or $(PAPERS),none yet)))

help: ## List the targets (papers found: see the last line)
	@grep -hE '^[a-zA-Z%_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | \
		awk -F'\t' '{printf "  %-18s %s\n", $$1, $$2}'
	@echo "  papers: $(if $(PAPERS),$(PAPERS),none yet)"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $@

setup: $(STAMP) ## Create .venv and install the pinned environment (once; again when pyproject.toml changes)

test: $(STAMP) ## Run every test but the gpu and data tiers (what CI runs)
	$(PY) -m pytest -m "not gpu and not data"

test-fast: $(STAMP) ## Run the fast tier only (no slow learning checks)
	$(PY) -m pytest -m "not slow and not gpu and not data"

lint: $(STAMP) ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP) ## ruff fix and format
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# A paper trained in stages (pretrain then fine-tune) chains its fits in <paper>/scripts/toy.py, which takes
# the same arguments as the single fit.
toy-%: $(STAMP) ## Toy-world training of a paper on CPU: paper.yaml + tiny.yaml [EXP= ARGS=]
	@: $(call is_paper,$*)
	@if [ -f $*/scripts/toy.py ]; then set -x; $(PY) -m $*.scripts.toy $(call exp_config,$*) $(ARGS); \
	else set -x; $(PY) -m $*.train fit --config $*/configs/paper.yaml --config $*/configs/tiny.yaml \
		$(call exp_config,$*) $(ARGS); fi

smoke-%: $(STAMP) ## The toy run with fast_dev_run (one batch of each loop)
	@: $(call is_paper,$*)
	$(PY) -m $*.train fit --config $*/configs/paper.yaml --config $*/configs/tiny.yaml \
		--trainer.fast_dev_run=true $(ARGS)

train-%: $(STAMP) ## The paper recipe [EXP=<overlay> ARGS=...]
	@: $(call is_paper,$*)
	$(PY) -m $*.train fit --config $*/configs/paper.yaml $(call exp_config,$*) $(ARGS)

eval-%: $(STAMP) ## Test a checkpoint: CKPT=path (uses the run's saved config.yaml when there is one)
	@: $(call is_paper,$*)
	@test -n "$(CKPT)" || { echo "eval-$*: set CKPT=path/to/checkpoint.ckpt"; exit 2; }
	@test -f "$(CKPT)" || { echo "eval-$*: no checkpoint at $(CKPT)"; exit 2; }
	cfg=$$(dirname "$(CKPT)")/../config.yaml; [ -f "$$cfg" ] || cfg=$*/configs/paper.yaml; \
	$(PY) -m $*.train test --config "$$cfg" --ckpt_path "$(CKPT)" --exp eval $(ARGS)

predict-%: $(STAMP) ## Apply a trained model to your input: CKPT=path ARGS="..."
	@: $(call is_paper,$*)
	@test -n "$(CKPT)" || { echo "predict-$*: set CKPT=path/to/checkpoint.ckpt"; exit 2; }
	$(PY) -m $*.predict --ckpt "$(CKPT)" $(ARGS)

data-%: $(STAMP) ## Say where to get a paper's real datasets and prepare them
	@: $(call is_paper,$*)
	$(PY) -m $*.scripts.prepare_data $(ARGS)

toy-data: $(STAMP) ## Generate the shared toy-world datasets under data/toy/
	$(PY) -m common.toyworld msrvtt --out data/toy/msrvtt --num 200 --seed 0
	$(PY) -m common.toyworld imagetext --out data/toy/imagetext --num 500 --seed 0
	$(PY) -m common.toyworld msrvtt_qa --out data/toy/msrvtt_qa --num 200 --seed 0
	$(PY) -m common.toyworld msrvtt_mc --out data/toy/msrvtt_mc --num 100 --seed 0
	$(PY) -m common.toyworld webvid --out data/toy/webvid --num 200 --seed 0
	$(PY) -m common.toyworld anet_captions --out data/toy/anet_captions --num 50 --seed 0
	$(PY) -m common.toyworld refcoco --out data/toy/refcoco --num 200 --seed 0
	$(PY) -m common.toyworld pink_rc --out data/toy/pink_rc --num 200 --seed 0

bench: $(STAMP) ## Run every benchmark in full; results land in benchmarks/results/
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

bench-quick: $(STAMP) ## Every benchmark in quick mode; results land in runs/bench/
	@for b in benchmarks/bench_*.py; do echo "== $$b --quick"; $(PY) $$b --quick || exit 1; done

report: $(STAMP) ## Compare all runs: runs/report.md (table) and runs/report.png (learning curves)
	$(PY) -m common.report --runs runs

demo: $(STAMP) ## Toy-world training of every paper, then the report; the common benchmarks in quick mode
	$(MAKE) --no-print-directory toy-data
	$(MAKE) --no-print-directory bench-quick
	@for p in $(PAPERS); do $(MAKE) --no-print-directory toy-$$p || exit 1; done
	@if [ -n "$(PAPERS)" ]; then $(MAKE) --no-print-directory report; \
	else echo "No paper folders yet: ran the toy-world generators and the common benchmarks (runs/bench/)."; \
		for f in runs/bench/*-quick.md; do echo; echo "==== $$f"; cat "$$f"; done; fi

clean-runs: ## Delete run outputs (runs/), keeping data/
	rm -rf runs
