# Gatehouse: `make run` (demo on SQLite) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1
STAMP := $(VENV)/.installed

.PHONY: install run test lint format clean bench-gateway bench-reports bench-apply

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

.env:
	@$(BIN)/python -c "import secrets; print('DJANGO_SECRET_KEY=' + secrets.token_urlsafe(50)); print('GATEHOUSE_MASTER_KEY=sk-' + secrets.token_urlsafe(32))" > .env
	@chmod 600 .env
	@echo "Wrote .env (a new secret key and master key)."

run: $(STAMP) .env
	@mkdir -p var
	$(BIN)/python manage.py migrate --no-input -v 0
	$(BIN)/python manage.py load_demo --port $(PORT) --host $(HOST)
	$(BIN)/uvicorn config.asgi:application --host $(HOST) --port $(PORT) --no-access-log

test: $(STAMP)
	$(BIN)/python -m pytest

bench-gateway: $(STAMP)
	$(BIN)/python -m bench.gateway

bench-reports: $(STAMP)
	$(BIN)/python -m bench.reports

bench-apply: $(STAMP)
	$(BIN)/python -m bench.apply

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) var .env .pytest_cache .mypy_cache .ruff_cache
