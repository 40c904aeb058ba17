# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test ui bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

## demo: install the project and run the demo week on the shipped demo dataset
demo: $(VENV)/.installed
	$(BIN)/llm-eval demo

## test: install the project with its dev tools, lint, and run the test suite
test: $(VENV)/.installed-dev
	$(BIN)/ruff check llm_eval_pipeline llm_eval_pipeline_tests benchmarks
	$(BIN)/pytest

## ui: the Dagster UI on http://127.0.0.1:3000, its instance kept in LLM_EVAL_HOME
ui: $(VENV)/.installed
	$(BIN)/llm-eval ui

## bench: every benchmark (never part of `make test`); writes benchmarks/RESULTS.md
bench: $(VENV)/.installed-dev
	$(BIN)/python -m benchmarks.run_all

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check llm_eval_pipeline llm_eval_pipeline_tests benchmarks
	$(BIN)/ruff format --check llm_eval_pipeline llm_eval_pipeline_tests benchmarks

clean:
	rm -rf .llm_eval .pytest_cache .ruff_cache spark-warehouse metastore_db derby.log
