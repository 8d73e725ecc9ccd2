# Two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: demo test test-fast lint bench chaos tools venv clean openapi local-stack

$(STAMP): pyproject.toml
	@scripts/ensure-tools.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

venv: $(STAMP)

demo: venv
	BLUECLERK_MODE=local $(PY) -m control.cli demo

# PostgreSQL first: if it cannot be started the run stops here, saying why, rather than
# every PostgreSQL test failing on an empty URL.
test: venv
	@url="$$(scripts/ensure-postgres.sh)" || { echo "make test: no PostgreSQL (see above)" >&2; exit 1; }; \
	  TEST_POSTGRES_URL="$$url" BLUECLERK_MODE=local $(PY) -m pytest $(PYTEST_ARGS)

test-fast: venv
	BLUECLERK_MODE=local $(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: venv
	BLUECLERK_MODE=local $(PY) -m bench.run_all

# The large chaos run (bench/chaos.py; a smaller configuration runs in `make test`).
chaos: venv
	@url="$$(scripts/ensure-postgres.sh)" || { echo "make chaos: no PostgreSQL (see above)" >&2; exit 1; }; \
	  TEST_POSTGRES_URL="$$url" BLUECLERK_MODE=local $(PY) -m bench.chaos $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) .cache var .pytest_cache .mypy_cache .ruff_cache .hypothesis

# Regenerate docs/openapi.json after changing the control API on purpose (a test compares).
openapi: venv
	BLUECLERK_MODE=local $(PY) -m tests.integration.ops.test_openapi_document

# Kafka, the simulators, the control API on :8700 and a worker; Ctrl-C stops everything.
local-stack: venv
	BLUECLERK_MODE=local $(PY) -m control.cli local-stack
