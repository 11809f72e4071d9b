# TumorLens developer entry points. `make app` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8501

.PHONY: setup browser-deps app api test test-all screenshot bench lint format clean

setup: $(STAMP)

# Idempotent: the venv is (re)installed only when a requirements file changed.
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# The browser end-to-end test drives Debian's chromium through chromedriver; install
# them once (apt-get, with sudo only when not root) and skip at once when present.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
browser-deps:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			chromium chromium-driver; \
	fi

app: setup
	$(BIN)/streamlit run app.py --server.port $(PORT) --server.headless true

# REST API (see api/settings.py for the API_* variables: token, limits, models folder).
api: setup
	$(BIN)/uvicorn api.main:app --host $${API_HOST:-0.0.0.0} --port $${API_PORT:-8000}

# Benchmark (utils/bench): prints a table, writes artifacts/bench.json and rewrites the
# README's performance block between the bench markers. BENCH_ARGS=--quick for a smoke run.
bench: setup
	$(BIN)/python -m utils.bench --json artifacts/bench.json --readme README.md $(BENCH_ARGS)

test: setup browser-deps
	$(BIN)/python -m pytest

test-all: setup browser-deps
	$(BIN)/python -m pytest -m ""

# Regenerates docs/screenshots/analyse.png (the README's) with the browser test.
screenshot: setup browser-deps
	TUMORLENS_UPDATE_SCREENSHOT=1 $(BIN)/python -m pytest tests/e2e/test_browser.py -m browser

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
