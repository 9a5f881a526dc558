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

DEMO_PORT ?= 8000
# The collector on the simulated feed and the web side beside it: the chart is
# open without a login (CHART_PUBLIC) and the URL is printed. Ctrl-C stops both.
demo: migrate
	@key=$$($(BIN)/python -c "import secrets; print(secrets.token_urlsafe(40))"); \
	DJANGO_SECRET_KEY=$$key CHART_PUBLIC=true $(BIN)/python manage.py runserver \
		127.0.0.1:$(DEMO_PORT) --noreload >demo-web.log 2>&1 & web=$$!; \
	trap 'kill $$web 2>/dev/null' EXIT INT TERM; \
	echo "📈 live chart: http://127.0.0.1:$(DEMO_PORT)/chart/?symbol=AAPL  (API docs: http://127.0.0.1:$(DEMO_PORT)/api/docs/; web log: demo-web.log)"; \
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
