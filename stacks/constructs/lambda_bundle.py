"""The CDK side of bundling: a verified bundle as `lambda_.Code`, plus the progress line and warnings.

`bundling.py` and `bundle_verification.py` are plain Python (the benchmark and the local harness use them
too); this module decides when to verify and turns the result into an asset whose hash is the input hash.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from aws_cdk import AssetHashType
from aws_cdk import aws_lambda as lambda_

from stacks.constructs.bundle_verification import target_interpreter, verify_bundle
from stacks.constructs.bundling import BundleResult, BundleSpec, HandlerCheck, build_bundle

_HOST_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(
    platform.machine().lower(), platform.machine().lower()
)


def _log(message: str) -> None:
    # stderr: `cdk synth` prints it, and it never mixes with a template written to stdout.
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class VerifiedBundle:
    result: BundleResult
    code: lambda_.Code
    verified: bool


def verified_bundle(
    spec: BundleSpec,
    *,
    checks: Sequence[HandlerCheck],
    verify: bool = True,
    log: Callable[[str], None] = _log,
) -> VerifiedBundle:
    """Build (or reuse) the bundle, verify its handlers, and return it as a Lambda asset."""
    result = build_bundle(spec, log=log)
    log(result.summary(sorted({c.function for c in checks})))
    for warning in result.limit_warnings():
        log(f"[bundle] WARNING: {warning}")
    if verify:
        _verify_once(spec, result, checks, log)
    else:
        log(
            "[bundle] WARNING: handler verification SKIPPED (skip_bundle_verification): nothing proves "
            "this bundle imports; the pre-traffic hook is the only remaining check"
        )
    code = lambda_.Code.from_asset(
        str(result.zip_path), asset_hash=result.asset_hash, asset_hash_type=AssetHashType.CUSTOM
    )
    return VerifiedBundle(result=result, code=code, verified=verify)


def _verify_once(
    spec: BundleSpec, result: BundleResult, checks: Sequence[HandlerCheck], log: Callable[[str], None]
) -> None:
    target = result
    if spec.architecture != _HOST_ARCH:
        # Native wheels for another architecture cannot load here. Verify a twin built from the same
        # source and requirements for this host: it catches every failure of the three outages
        # (missing dependency, broken export, stale code), which are not architecture-specific.
        target = build_bundle(replace(spec, architecture=_HOST_ARCH), log=log)  # type: ignore[arg-type]
        log(
            f"[bundle] verifying a {_HOST_ARCH} twin of the {spec.architecture} bundle (host cannot load "
            f"{spec.architecture} native code)"
        )
    interpreter = target_interpreter(spec)
    key = hashlib.sha256(
        json.dumps(
            [
                target.asset_hash,
                interpreter,
                [[c.function, c.handler, c.http_health, list(c.environment)] for c in checks],
            ]
        ).encode()
    ).hexdigest()[:16]
    marker = target.directory.parent / f"verified-{key}"
    if marker.exists():
        return  # the same bundle already passed the same checks in the same interpreter
    verify_bundle(target, spec, checks, interpreter=interpreter)
    marker.write_text("ok\n")
    log(f"[bundle] verified {len(checks)} handler(s) in an isolated {spec.runtime} interpreter")
