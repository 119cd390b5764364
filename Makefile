# runnerguard: `make run` starts the service for real, `make test` runs the whole suite. Both set everything up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# One sentinel per set: `make run` installs only what running needs, `make test` adds the dev tools on top.
RUN_DEPS := $(VENV)/.run-deps-installed
DEV_DEPS := $(VENV)/.dev-deps-installed

.PHONY: run test lint bench demo reliability clean check-python

check-python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "runnerguard needs Python >= 3.11, found " + sys.version.split()[0])'

$(BIN)/python: | check-python
	$(PYTHON) -m venv $(VENV)

$(RUN_DEPS): requirements.txt requirements-run.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-run.txt
	@touch $@

$(DEV_DEPS): $(RUN_DEPS) requirements-dev.txt
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $@

## run: web (gunicorn) + workers (RQ) via the Procfile, against $$REDIS_URL or its own redis-server under ./var
run: $(RUN_DEPS)
	$(BIN)/python -m devtools.run_local

## test: the whole suite against its own redis-server on a free port (never yours), then ruff
test: $(DEV_DEPS)
	@bash devtools/install_browser.sh
	@sh devtools/install_promtool.sh
	@sh devtools/install_nginx.sh
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile -m "not reliability"
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

## lint: ruff, the import contracts (pyproject.toml) and mypy, without the suite
lint: $(DEV_DEPS)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

## demo: the stack with the GitHub simulator standing in for github.com, a week of a failing laptop pool
demo: $(RUN_DEPS)
	$(BIN)/python -m devtools.demo

## reliability: the full load, fault and abuse runs on real processes (loopback, several minutes), one table
reliability: $(DEV_DEPS)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m reliability tests/test_reliability.py
	$(BIN)/python -m devtools.reliability --fsync-always

## bench: the benchmarks under bench/, each printing a table against its baseline
bench: $(DEV_DEPS)
	$(BIN)/python bench/bench_ingest.py
	$(BIN)/python bench/bench_wrk.py
	$(BIN)/python bench/bench_memory.py --full-wait
	$(BIN)/python bench/bench_rollback.py
	$(BIN)/python bench/bench_prewarm.py
	$(BIN)/python bench/bench_agent_cache.py
	$(BIN)/python bench/bench_dashboard.py
	$(BIN)/python bench/bench_replicas.py
	$(BIN)/python bench/bench_capacity.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
