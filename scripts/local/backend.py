"""The backend bundle as the stack builds it, for the local tools and the harness tests: the catalog read from
cdk.json the way the stack reads it, the bundle spec for this host, and each function's probe environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import cache
from pathlib import Path

from scripts.local.environment import environment_config
from stacks.backend_bundle import bundle_spec, wrapper_environment
from stacks.bundling.build import build_bundle
from stacks.bundling.spec import BundleResult, BundleSpec
from stacks.config import EnvironmentConfig


@cache
def catalog_config(env: str = "prod") -> EnvironmentConfig:
    """The environment as the stack sees it (cdk.json's environments and function catalog), without jsii."""
    config: EnvironmentConfig = environment_config({}, env)
    return config


def backend_spec(backend_root: Path, cache_dir: Path, architecture: str = "x86_64") -> BundleSpec:
    """The stack's bundle spec for this host: the backend's src/ and requirements plus the probe wrapper."""
    spec = bundle_spec(catalog_config(), backend_root=backend_root, cache_dir=cache_dir)
    return replace(spec, architecture="arm64" if architecture == "arm64" else "x86_64")


def build_backend_bundle(backend_root: Path, cache_dir: Path, architecture: str) -> BundleResult:
    return build_bundle(backend_spec(backend_root, cache_dir, architecture))


# Function name -> real handler, from the catalog (what the stack sets as CREDMATE_REAL_HANDLER).
FUNCTION_HANDLERS = {f.name: f.handler for f in catalog_config().functions}


def function_environment(label: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The probe wrapper's environment the stack gives function `label` (plus `extra`)."""
    if label not in FUNCTION_HANDLERS:
        raise KeyError(f"unknown function {label!r}: expected one of {', '.join(FUNCTION_HANDLERS)}")
    return {**wrapper_environment(catalog_config().function_named(label)), **(extra or {})}
