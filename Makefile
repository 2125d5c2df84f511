# Every target runs on a fresh machine with nothing but python3 and make.
PYTHON ?= python3
VENV := .venv
.DEFAULT_GOAL := help
.PHONY: help test

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

test: ## run the test suite (creates .venv with pinned pytest if pytest is missing)
	@if $(PYTHON) -c 'import pytest' 2>/dev/null; then \
		$(PYTHON) -m pytest; \
	else \
		echo "pytest not found: installing dev/requirements.txt into $(VENV)"; \
		$(PYTHON) -m venv $(VENV) && $(VENV)/bin/pip install -q -r dev/requirements.txt && $(VENV)/bin/python -m pytest; \
	fi
