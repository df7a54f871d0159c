# Two entry points for people: `make demo` and `make test`. Both build their own .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck layers unit bench mutation clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m reconciler.demo

test: $(STAMP) lint typecheck layers unit

lint: $(STAMP)
	$(BIN)/ruff check reconciler tests bench
	$(BIN)/ruff format --check reconciler tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

layers: $(STAMP)
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

# Mutation testing of validate/, translate/ and xds/ against their fast tests ([tool.mutmut] in pyproject.toml).
# The whole run takes hours on 2 shared cores; MUTANTS narrows it with mutmut's name patterns, e.g. a ~10%
# sample with every function represented: make mutation MUTANTS='*__mutmut_*1'
MUTANTS ?=
MUTATION_JOBS ?= 2
mutation: $(STAMP)
	set -f; $(BIN)/mutmut run --max-children $(MUTATION_JOBS) $(MUTANTS)
	$(BIN)/mutmut results --all true | $(BIN)/python tests/support/mutation_summary.py

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis mutants
