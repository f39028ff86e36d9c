# Entry points for people and CI. Each target installs what it needs first, so a fresh
# clone needs only python3, node and npm on the PATH.
PYTHON ?= python3
VENV := .venv
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
CDK := node_modules/.bin/cdk

.PHONY: setup synth test lint bench bench-services clean node-test-deps broker-test-deps

$(VENV)/.runtime-installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# The services' own pins carry hashes, and pip checks hashes for a whole install or not at all: so they
# are installed by themselves rather than included from requirements-dev.txt.
$(VENV)/.dev-installed: $(VENV)/.runtime-installed requirements-dev.txt alchemy_services/requirements.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes -r alchemy_services/requirements.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

## Debian's etcd server and client, for the node script tests (tests/node); apt-get (with sudo when not
## root) only when they are missing. Only `make test` needs them: setup, lint, synth and the local loop do not.
node-test-deps:
	bash scripts/install-node-test-deps.sh

## Debian's RabbitMQ server, for the services' end-to-end tests (tests/services); apt-get (with sudo when not
## root) only when it is missing. Only `make test` needs it.
broker-test-deps:
	bash scripts/install-broker-test-deps.sh

setup: $(VENV)/.dev-installed node_modules/.installed

## Synthesize the stack on the default settings (no AWS account needed).
synth: $(VENV)/.runtime-installed node_modules/.installed
	$(CDK) synth

## Run the test suite: settings, constructs, stack, rule packs, snapshots, node scripts against real etcd
## and moto, the real CDK CLI, cfn-lint, secret scan, ruff and mypy (integration: `make integration`).
## tests/node starts real etcd clusters and a moto server: it runs alone, in one process, so that
## nothing starves their elections.
test: setup node-test-deps broker-test-deps
	$(VENV)/bin/pytest --ignore=tests/node
	$(VENV)/bin/pytest -n 0 tests/node

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

## Time `cdk synth` against an empty CDK app and the test suite.
bench: setup
	$(VENV)/bin/python scripts/bench_synth.py

## Requests per second and latency of GET /v1/hello through router, RabbitMQ and hello_world.
bench-services: setup
	$(VENV)/bin/python scripts/bench_services.py

clean:
	rm -rf cdk.out $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache

.PHONY: boot-test

## Boot three systemd containers from the stack's real user data and run the node scenarios (issue 9).
## Needs root; the Debian root is built once per machine under /var/cache/alchemy-boot.
boot-test: setup
	ALCHEMY_BOOT_TEST=1 $(VENV)/bin/pytest -n 0 -p no:cacheprovider -s tests/boot/test_scenarios.py

.PHONY: integration local-deploy local-diff local-destroy

## The real CDK CLI against a fresh local AWS emulator (moto on 127.0.0.1): bootstrap, deploy, diff, destroy.
integration: setup
	$(VENV)/bin/pytest -m integration tests/integration

## Deploy to a local AWS emulator and print what was deployed; settings as ARGS='node_count=4 nat_per_az=true'.
local-deploy: setup
	$(VENV)/bin/python -m alchemy_tools.local_deploy up $(ARGS)

## `cdk diff` of ARGS against the locally deployed stack, and the pull-request comment it would give.
local-diff: setup
	$(VENV)/bin/python -m alchemy_tools.local_deploy diff $(ARGS)

## `cdk destroy` the local stack, then stop the emulator.
local-destroy: setup
	$(VENV)/bin/python -m alchemy_tools.local_deploy down $(ARGS)
