# TumorLens developer entry points. `make app` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8501

.PHONY: setup app api test test-all lint format clean bench

setup: $(STAMP)

# Idempotent: the venv is (re)installed only when a requirements file changed.
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

app: setup
	$(BIN)/streamlit run app.py --server.port $(PORT) --server.headless true

# REST API (see api/settings.py for the API_* variables: token, limits, models folder).
api: setup
	$(BIN)/uvicorn api.main:app --host $${API_HOST:-0.0.0.0} --port $${API_PORT:-8000}

# Benchmark (utils/bench): prints a table, writes artifacts/bench.json and rewrites the
# README's performance block between the bench markers. BENCH_ARGS=--quick for a smoke run.
bench: setup
	$(BIN)/python -m utils.bench --json artifacts/bench.json --readme README.md $(BENCH_ARGS)

test: setup
	$(BIN)/python -m pytest

test-all: setup
	$(BIN)/python -m pytest -m ""

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
