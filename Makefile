# Entry points for people and CI (`make help` lists them). Each target installs what it needs first, so a
# fresh clone needs only python3, node and npm on the PATH.
PYTHON ?= python3
VENV := .venv
PIP := $(VENV)/bin/pip install --quiet --disable-pip-version-check
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
CDK := node_modules/.bin/cdk

.DEFAULT_GOAL := help
.PHONY: help setup synth test unit-test node-test services-test check lint format lock bench bench-services clean node-test-deps broker-test-deps

## List the targets and what each does.
help:
	@awk '/^## /{if (!doc) doc=substr($$0, 4); next} /^[a-z][a-z-]*:/{if (doc) printf "  %-16s %s\n", substr($$1, 1, length($$1)-1), doc} {doc=""}' $(MAKEFILE_LIST)

# Installs come from the locks (every transitive pin with its hashes; `make lock` rewrites them from
# requirements*.txt). --no-compile: aws-cdk-lib alone is 180 MB of modules the app never imports. Only what
# the app imports is compiled (compile_imported.py); Python compiles the rest as it is first imported.
$(VENV)/.runtime-installed: requirements.lock
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(PIP) --no-compile --require-hashes -r requirements.lock
	$(VENV)/bin/python scripts/compile_imported.py
	touch $@

# The services' own pins carry hashes and are installed by themselves, as they are in the services' image.
# The test tools are compiled as they install (about 15 s once): moto, botocore and the AWS CLI start in many
# processes a run, and where bytecode is never written (PYTHONDONTWRITEBYTECODE, as on CI machines) each process
# compiled them again (moto 0.9 s, the AWS CLI 0.7 s, cfn-lint's sympy 3 s). aws-cdk-lib, already installed
# from requirements.lock, is not installed again, so not compiled either.
$(VENV)/.dev-installed: $(VENV)/.runtime-installed requirements-dev.lock alchemy_services/requirements.txt
	$(PIP) --require-hashes -r requirements-dev.lock
	$(PIP) --require-hashes -r alchemy_services/requirements.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

## Debian's etcd server and client, for the node script tests (tests/node).
## apt-get (with sudo when not root) only when they are missing. Only `make test` needs them: setup, lint, synth and the local loop do not.
node-test-deps:
	bash scripts/install-node-test-deps.sh

## Debian's RabbitMQ server, for the services' end-to-end tests (tests/services).
## apt-get (with sudo when not root) only when it is missing. Only `make services-test` needs it.
broker-test-deps:
	bash scripts/install-broker-test-deps.sh

## Install the Python tools (from the hashed locks) and the CDK CLI.
setup: $(VENV)/.dev-installed node_modules/.installed

## Synthesize the stack on the default settings (no AWS account needed).
synth: $(VENV)/.runtime-installed node_modules/.installed
	$(CDK) synth

## Run the test suite: unit-test and node-test side by side (the services against RabbitMQ: `make services-test`;
## the real CDK CLI: `make integration`; CI runs all of them). The node suite mostly waits (on etcd, moto and the
## AWS CLI) while the unit suite computes in one process, so the two run at once: the unit suite `nice`d so that
## etcd's elections are never starved. Each writes to its own log, shown whole once both are done; the target
## fails if either failed.
test: setup node-test-deps
	@mkdir -p .test-logs
	@status=0; \
	nice -n 10 $(MAKE) --no-print-directory unit-test > .test-logs/unit.log 2>&1 & unit=$$!; \
	$(MAKE) --no-print-directory node-test > .test-logs/node.log 2>&1 & node=$$!; \
	wait $$unit || status=1; wait $$node || status=1; \
	echo "===== unit tests (make unit-test)"; cat .test-logs/unit.log; \
	echo "===== node script tests (make node-test)"; cat .test-logs/node.log; \
	exit $$status

## Settings, constructs, stack, rule packs, snapshots, secret scan of artefacts, the services' own code.
## One process: every variant is synthesized once, and a second worker would cost more CPU than it saves.
unit-test: setup
	$(VENV)/bin/pytest -n 0 --ignore=tests/node -m "not integration and not broker"

## The node scripts against real etcd clusters and moto: three processes, one test file each at a time.
node-test: setup node-test-deps
	$(VENV)/bin/pytest -n 3 --dist loadfile tests/node

## The router and hello_world end to end against a real RabbitMQ (Debian's), in one process.
services-test: setup broker-test-deps
	$(VENV)/bin/pytest -n 0 -m broker tests/services

## The quality gate: every pre-commit hook (.pre-commit-config.yaml) on every file.
## ruff, ruff format, shellcheck, shfmt, the workflow schema and strict mypy. The same hooks run on each commit after `.venv/bin/pre-commit install`.
check: setup
	$(VENV)/bin/pre-commit run --all-files --show-diff-on-failure

## The quality gate under the name .ci/run and the pull-request workflow use (the same as `make check`).
lint: check

## Rewrite what the formatters would change: ruff format on Python, shfmt on every shell script.
format: setup
	$(VENV)/bin/ruff format .
	git ls-files -z | xargs -0 $(VENV)/bin/shfmt --find | xargs --no-run-if-empty $(VENV)/bin/shfmt --write

## Recompile requirements*.lock from requirements*.txt, every transitive pin with its hashes (needs PyPI).
lock: setup
	$(VENV)/bin/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \
		--output-file requirements.lock requirements.txt
	$(VENV)/bin/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \
		--output-file requirements-dev.lock requirements-dev.txt

## Time `cdk synth` against an empty CDK app, `make test` and its two suites; sizes of the bundle and user data.
bench: setup
	$(VENV)/bin/python scripts/bench_synth.py $(ARGS)

## Requests per second and latency of GET /v1/hello through router, RabbitMQ and hello_world.
bench-services: setup
	$(VENV)/bin/python scripts/bench_services.py

## Remove everything that setup and the checks create.
clean:
	rm -rf .test-logs cdk.out $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache

.PHONY: boot-test

## Boot three systemd containers from the stack's real user data and run the node scenarios.
## Needs root; the Debian root is built once per machine under /var/cache/alchemy-boot.
boot-test: setup
	ALCHEMY_BOOT_TEST=1 $(VENV)/bin/pytest -n 0 -p no:cacheprovider -s tests/boot/test_scenarios.py

.PHONY: integration local-deploy local-diff local-destroy

## The real CDK CLI: `cdk synth` on defaults and on a bad setting, and against a fresh local AWS emulator (moto on
## 127.0.0.1) bootstrap, deploy, diff, destroy. A file a process, so each file's deploy cycle runs once.
integration: setup
	$(VENV)/bin/pytest -m integration --dist loadfile tests/integration

## Deploy to a local AWS emulator and print what was deployed; settings as ARGS='node_count=4 nat_per_az=true'.
local-deploy: setup
	$(VENV)/bin/python -m alchemy_tools.local_deploy up $(ARGS)

## `cdk diff` of ARGS against the locally deployed stack, and the pull-request comment it would give.
local-diff: setup
	$(VENV)/bin/python -m alchemy_tools.local_deploy diff $(ARGS)

## `cdk destroy` the local stack, then stop the emulator.
local-destroy: setup
	$(VENV)/bin/python -m alchemy_tools.local_deploy down $(ARGS)
