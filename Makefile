# Two commands on a fresh machine with Python 3.11+:
#   make demo   set up and run the collector against the built-in simulated feed
#   make test   set up and run the test suite (SQLite, or PostgreSQL via DATABASE_URL)
PYTHON ?= python3
VENV ?= .venv
# Two workers, a test file each at a time: the fault tests mostly wait on
# sockets and clocks, so the suite takes about half as long.
PYTEST_ARGS ?= -n 2 --dist loadfile
BIN := $(VENV)/bin

.PHONY: demo run test lint format migrate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

migrate: $(VENV)/.runtime
	$(BIN)/python manage.py migrate --noinput

demo: migrate
	$(BIN)/python manage.py run_websocket_collector_v2 --demo --symbols AAPL,MSFT,TSLA

run: migrate
	$(BIN)/python manage.py run_websocket_collector_v2 $(ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
