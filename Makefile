# The commands a user would guess. Everything runs from the project's virtualenv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: all setup run train serve exporter traffic test test-fast lint format mlflow-ui bench clean \
	monitoring-check monitoring-up monitoring-down

all: run

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

## setup: create the virtualenv and install the pinned requirements
setup: $(STAMP)

## run: the main job on the embedded defaults (train, then serve the champion)
run: train serve

## train: train, track and register the models (python modelling.py)
train: setup
	$(PY) modelling.py

## serve: serve the champion on port 5000 (python ml_serving.py)
serve: setup
	$(PY) ml_serving.py

## exporter: system and model-quality metrics on port 8000
exporter: setup
	$(PY) prometheus_exporter.py

## traffic: send realistic traffic to the API
traffic: setup
	$(PY) inference.py

## test: lint (ruff check and ruff format --check), then the whole test suite
test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

## test-fast: the unit layer only (in process, no servers, no MLflow store): well under a minute
test-fast: setup
	$(PY) -m pytest tests/unit

## lint: ruff lint and format check
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## format: apply ruff's formatting and safe fixes
format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## mlflow-ui: browse runs and the registry on http://localhost:5001
mlflow-ui: setup
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --port 5001

## bench: our API vs mlflow models serve, MLServer, BentoML on the champion -> docs/BENCHMARKS.md (needs wrk)
bench: setup
	$(PY) bench/run.py $(BENCH_FLAGS)

## monitoring-check: validate prometheus.yml, the rules and the compose file; run the rule tests
monitoring-check:
	promtool check config prometheus.yml
	promtool check rules prometheus/rules/*.yml
	promtool test rules prometheus/tests/*.yml
	docker-compose config --quiet

## monitoring-up: start Prometheus, Grafana and node exporter (needs Docker)
monitoring-up:
	docker-compose up -d

## monitoring-down: stop them (data is kept in named volumes)
monitoring-down:
	docker-compose down

## clean: remove local stores and caches (not the virtualenv)
clean:
	rm -rf mlflow.db mlartifacts predictions.db predictions.db-* .pytest_cache .ruff_cache
