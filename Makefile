# `make demo` and `make test` are the README's two commands: each creates the virtualenv
# (.venv) if needed, installs, and runs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/activate:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

.PHONY: install install-test demo test test-slow bench lint
install: $(BIN)/activate
	$(BIN)/pip install -q -e .

install-test: $(BIN)/activate
	$(BIN)/pip install -q -e '.[test]'

# `make demo PORT=18800` runs the demo stack on 18800-18802 (default: 18780, or free ports).
demo: install
	$(BIN)/opsconsole demo $(if $(PORT),--port $(PORT))

test: install-test
	$(BIN)/python -m pytest -q -n 2 -m "not slow"

# The slow tests (other PostgreSQL/Redis versions, kill -9 rounds); CI runs them after `test`.
test-slow: install-test
	$(BIN)/python -m pytest -q -m slow

# bench_lighthouse runs the real Lighthouse CLI, installed as .ci/run installs it (npm, into
# a folder git ignores): without it a fresh clone's `make bench` failed that bench.
bench: $(BIN)/activate
	$(BIN)/pip install -q -e '.[test,bench]'
	[ -x .ci/lighthouse/node_modules/.bin/lighthouse ] || \
		npm install --prefix .ci/lighthouse --no-audit --no-fund
	$(BIN)/python bench/run_all.py

# ~33 minutes: RSS of a 200-target console over 30 minutes (not part of `make bench`)
bench-soak: $(BIN)/activate
	$(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/python bench/soak_rss.py

lint: install-test
	$(BIN)/pip install -q ruff mypy import-linter
	$(BIN)/ruff check console widgets themes tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
