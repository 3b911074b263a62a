# The two commands a fresh machine needs: `make synth` and `make test`. Both set up what they need first;
# set-up is stamp-based, so it does nothing when requirements and the npm lock are unchanged.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/node_modules/.bin:$(PATH)
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export PYTHONDONTWRITEBYTECODE := 1
CDK := npx --no-install cdk
ENV ?= staging
STACK = credmate-backend-$(ENV)

.PHONY: setup synth test lint typecheck unit diff deploy bench local-invoke local-api local-event diagram smoke wait-deployments clean

$(VENV)/.installed: requirements.txt requirements-dev.txt apps/backend-api/requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

setup: $(VENV)/.installed node_modules/.installed

synth: setup
	$(CDK) synth --quiet
	@# cdk-nag runs inside synth (it fails on findings); cfn-lint's report lands beside the templates.
	@rc=0; $(VENV)/bin/cfn-lint --format parseable cdk.out/*.template.json > cdk.out/cfn-lint-report.txt || rc=$$?; \
	  if [ $$((rc & 2)) -ne 0 ]; then grep ':E' cdk.out/cfn-lint-report.txt; echo "cfn-lint found errors"; exit 1; fi
	@# checkov, offline: every failed check must be fixed or skipped with its reason (checkov_skip).
	$(PY) scripts/checkov_gate.py --dir cdk.out --summary
	@ls cdk.out/*.template.json

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) scripts/alarm_table.py --check README.md

typecheck: setup
	$(VENV)/bin/mypy .
	cd apps/backend-api && ../../.venv/bin/mypy src tests --config-file ../../pyproject.toml

unit: setup
	$(VENV)/bin/pytest -n 2

test: lint typecheck unit

diff: setup
	$(PY) scripts/pr_diff.py $(if $(BASE),--base $(BASE))

deploy: setup
	$(PY) scripts/deploy_guard.py $(STACK) $(CDK_ARGS)
	@# Synthesize once, check that assembly's bundle verification, then deploy exactly that assembly.
	$(CDK) synth --quiet $(STACK) $(STACK)-policy $(CDK_ARGS)
	$(PY) scripts/deploy_guard.py --assembly cdk.out $(STACK) $(CDK_ARGS)
	$(CDK) deploy --app cdk.out $(STACK) $(STACK)-policy --require-approval never $(CDK_ARGS)

wait-deployments: setup
	$(PY) scripts/wait_deployments.py --stack $(STACK)

bench: setup
	$(PY) scripts/bench.py

local-invoke: setup
	$(PY) scripts/local_invoke.py --function $(FUNCTION) --event $(EVENT)

# The environment's API on 127.0.0.1 (real bundles under the Lambda RIE); WATCH=1 rebuilds on source edits.
PORT ?= 3000
local-api: setup
	$(PY) scripts/local_api.py --env $(ENV) --port $(PORT) $(if $(filter 1 true yes,$(WATCH)),--watch) $(ARGS)

# The event SQS (KIND=sqs) or EventBridge (KIND=schedule) would deliver to FUNCTION, invoked locally.
local-event: setup
	$(PY) scripts/local_event.py --env $(ENV) --function $(FUNCTION) --kind $(KIND) $(if $(BODY),--body '$(BODY)') $(ARGS)

diagram: synth
	$(PY) scripts/diagram.py --out docs/architecture.svg

smoke: setup
	$(PY) scripts/smoke_test.py --url $(URL)

clean:
	rm -rf cdk.out .cache
