#!/usr/bin/env python3
"""credmate-lambda: the CDK app. The only place that reads configuration (CDK context and environment)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk

from stacks.backend_stack import BackendStack, BackendStackProps
from stacks.config import ConfigError, EnvironmentConfig, parse_environments
from stacks.constructs.bundling import BundlingError

REPO_ROOT = Path(__file__).resolve().parent
DEFAULT_BACKEND_ROOT = "apps/backend-api"


def _flag(app: cdk.App, key: str) -> bool:
    value = app.node.try_get_context(key)
    if value in (None, False, "false", "0", ""):
        return False
    if value in (True, "true", "1"):
        return True
    raise ConfigError(f"cdk context {key}: invalid value {value!r}; allowed: true or false")


def backend_root(app: cdk.App) -> Path:
    raw = app.node.try_get_context("backend_root") or DEFAULT_BACKEND_ROOT
    root = Path(raw)
    root = root if root.is_absolute() else (REPO_ROOT / root)
    for needed in ("src", "requirements.txt"):
        if not (root / needed).exists():
            raise ConfigError(f"cdk context backend_root={raw!r}: {root / needed} does not exist; "
                              "backend_root must be a folder holding src/ and requirements.txt")
    return root.resolve()


def build_app(app: cdk.App) -> dict[str, BackendStack]:
    environments: dict[str, EnvironmentConfig] = parse_environments(app.node.try_get_context("environments"))
    props_common: dict[str, Any] = {
        "backend_root": backend_root(app),
        "cache_dir": REPO_ROOT / ".cache",
        "verify_bundle": not _flag(app, "skip_bundle_verification"),
    }
    stacks = {}
    for name, config in environments.items():
        env = cdk.Environment(account=config.account, region=config.region) if config.account else None
        stack = BackendStack(app, config.stack_name, props=BackendStackProps(config=config, **props_common),
                             env=env, stack_name=config.stack_name)
        cdk.Tags.of(stack).add("project", "credmate-lambda")
        cdk.Tags.of(stack).add("environment", name)
        stacks[name] = stack
    return stacks


def main() -> None:
    app = cdk.App()
    try:
        build_app(app)
    except (ConfigError, BundlingError) as err:
        print(f"\ncredmate-lambda: synth stopped.\n{err}\n", file=sys.stderr)
        sys.exit(1)
    app.synth()


if __name__ == "__main__":
    main()
