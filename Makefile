# Entry points for people and CI. Each target installs what it needs first, so a fresh
# clone needs only python3, node and npm on the PATH.
PYTHON ?= python3
VENV := .venv
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
CDK := node_modules/.bin/cdk

.PHONY: setup synth test lint bench clean

$(VENV)/.runtime-installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev-installed: $(VENV)/.runtime-installed requirements-dev.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV)/.dev-installed node_modules/.installed

## Synthesize the stack on the default settings (no AWS account needed).
synth: $(VENV)/.runtime-installed node_modules/.installed
	$(CDK) synth

## Run every test: unit, snapshot, rule packs, CLI, cfn-lint, ruff and mypy.
test: setup
	$(VENV)/bin/pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

## Time `cdk synth` against an empty CDK app and the test suite.
bench: setup
	$(VENV)/bin/python scripts/bench_synth.py

clean:
	rm -rf cdk.out $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
