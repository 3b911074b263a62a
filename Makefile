# The two commands a fresh machine needs: `make synth` and `make test`. Both set up what they need first;
# set-up is stamp-based, so it does nothing when requirements and the npm lock are unchanged.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# node_modules/.bin first: the Node pinned in package.json (npm package `node`) runs cdk, jsii and the
# scripts, whatever Node bootstrapped `npm ci`.
export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/node_modules/.bin:$(PATH)
export PYTHONDONTWRITEBYTECODE := 1
CDK := npx --no-install cdk
ENV ?= staging
STACK = credmate-backend-$(ENV)

NODE_MAJOR_MIN := 22
WORKFLOWS ?= $(wildcard .github/workflows/*.yml)

.PHONY: setup synth test lint lint-workflows typecheck unit diff deploy bench lock local-invoke local-api local-user local-event diagram graph smoke wait-deployments clean

$(VENV)/.installed: requirements.txt requirements-dev.txt apps/backend-api/requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# uv (pinned in requirements.txt) installs the rest: parallel downloads, the same pins, a minute less
	@# than pip on a fresh machine.
	$(PY) -m pip install --quiet --disable-pip-version-check $$(grep -E '^uv==' requirements.txt)
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(VENV)/bin/uv pip install --quiet -r requirements-dev.txt
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@node -e 'if (+process.versions.node.split(".")[0] < $(NODE_MAJOR_MIN)) { console.error(`node $${process.version} \
	  on PATH: $(NODE_MAJOR_MIN)+ expected from node_modules/.bin (package.json)`); process.exit(1) }'
	@touch $@

setup: $(VENV)/.installed node_modules/.installed

synth: setup
	$(CDK) synth --quiet
	@# cdk-nag runs inside synth (it fails on findings); cfn-lint's report lands beside the templates.
	@rc=0; $(VENV)/bin/cfn-lint --format parseable cdk.out/*.template.json > cdk.out/cfn-lint-report.txt || rc=$$?; \
	  if [ $$((rc & 2)) -ne 0 ]; then grep ':E' cdk.out/cfn-lint-report.txt; echo "cfn-lint found errors"; exit 1; fi
	@# checkov, offline: every failed check must be fixed or skipped with its reason (checkov_skip).
	$(PY) -m scripts.checkov_gate --dir cdk.out --summary
	@ls cdk.out/*.template.json

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m scripts.alarm_table --check docs/alarms.md
	@$(MAKE) --no-print-directory lint-workflows

# GitHub's workflow schema, offline; the validator takes one file per call.
lint-workflows: node_modules/.installed
	@for f in $(WORKFLOWS); do action-validator "$$f" || { echo "$$f: not a valid workflow"; exit 1; }; done

typecheck: setup
	$(VENV)/bin/mypy --num-workers 2 .
	cd apps/backend-api && ../../.venv/bin/mypy src tests --config-file ../../pyproject.toml

unit: setup
	$(VENV)/bin/pytest -n 2 --dist worksteal

# Set-up's two installs side by side; lint (seconds); then mypy beside pytest, which leaves part of the second
# core idle. Each target's output is printed whole when it ends.
test:
	@$(MAKE) --no-print-directory -j2 --output-sync=target $(VENV)/.installed node_modules/.installed
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory -j2 --output-sync=target typecheck unit

diff: setup
	$(PY) -m scripts.pr_diff $(if $(BASE),--base $(BASE))

deploy: setup
	$(PY) -m scripts.deploy.guard $(STACK) $(CDK_ARGS)
	@# Synthesize once, check that assembly's bundle verification, then deploy exactly that assembly.
	$(CDK) synth --quiet $(STACK) $(STACK)-policy $(CDK_ARGS)
	$(PY) -m scripts.deploy.guard --assembly cdk.out $(STACK) $(CDK_ARGS)
	$(CDK) deploy --app cdk.out $(STACK) $(STACK)-policy --require-approval never $(CDK_ARGS)

wait-deployments: setup
	$(PY) -m scripts.deploy.wait_deployments --stack $(STACK)

bench: setup
	$(PY) -m scripts.bench
	$(PY) -m scripts.bench.catalog

# requirements.lock beside each backend's requirements.txt (BACKEND=path for another one); synth refuses a
# lock whose requirements.txt changed since.
lock: setup
	$(PY) -m scripts.bundle.lock $(BACKEND)

# BACKEND=path: another backend folder (src/ and its manifest) than apps/backend-api.
local-invoke: setup
	$(PY) -m scripts.local.invoke --function $(FUNCTION) --event $(EVENT) $(if $(BACKEND),--backend $(BACKEND))

# The environment's API on 127.0.0.1 (real bundles under the Lambda RIE); WATCH=1 rebuilds on source edits.
# Its database: $$DATABASE_URL, else a local PostgreSQL kept in .cache/local-postgres/ENV, migrated to head.
PORT ?= 3000
local-api: setup
	$(PY) -m scripts.local.api --env $(ENV) --port $(PORT) $(if $(filter 1 true yes,$(WATCH)),--watch) $(ARGS)

# A user of the local database who can log in through `make local-api` (the backend has no sign-up route).
local-user: setup
	@test -n "$(EMAIL)" -a -n "$(PASSWORD)" || { echo "usage: make local-user EMAIL=me@example.com PASSWORD=..."; exit 2; }
	@printf '%s\n' '$(PASSWORD)' | $(PY) -m scripts.local.user --env $(ENV) --email '$(EMAIL)' --password-stdin $(ARGS)

# The event SQS (KIND=sqs) or EventBridge (KIND=schedule) would deliver to FUNCTION, invoked locally.
local-event: setup
	$(PY) -m scripts.local.event --env $(ENV) --function $(FUNCTION) --kind $(KIND) $(if $(BODY),--body '$(BODY)') $(ARGS)

diagram: synth
	$(PY) -m scripts.diagram --out docs/architecture.svg

# Which functions reach which shared backend modules (import closure): docs/dependency-graph.md.
graph: setup
	$(PY) -m scripts.dependency_graph --env $(ENV)

smoke: setup
	$(PY) -m scripts.deploy.smoke_test --url $(URL)

clean:
	rm -rf cdk.out .cache
