"""The CDK side of bundling: a verified bundle as `lambda_.Code`, plus the progress line and warnings.

`stacks/bundling/` is plain Python (the benchmark and the local harness use it too); this module decides
when to verify and turns the result into an asset whose hash is the input hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

import aws_cdk as cdk
import jsii
from aws_cdk import AssetHashType
from aws_cdk import aws_lambda as lambda_

from stacks.bundling.build import build_bundle
from stacks.bundling.spec import BundleResult, BundleSpec, BundlingError, HandlerCheck
from stacks.bundling.verification import target_interpreter, verify_bundle

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
    # For the template (Metadata.CredmateBundles, which scripts/deploy/guard.py trusts): false, or a token
    # that resolves to true only once this bundle's verification has passed (see _VerifiedFlag).
    verified: bool | cdk.IResolvable
    # A Code of the same asset for another stack (a nested function group): CDK binds a Code to one stack.
    new_code: Callable[[], lambda_.Code]


@jsii.implements(cdk.IStableAnyProducer)
class _VerifiedFlag:
    """Resolved when synth writes the template: waits for the bundle's verification, and is true only when
    it passed. A failed, broken or unfinished check can never be recorded as verified: a failure resolves to
    false here and withdraws the assembly in app.py main()."""

    def __init__(self, future: Future[None]) -> None:
        self.future = future

    def produce(self) -> bool:
        try:
            self.future.result()
        except Exception:
            return False
        return True


def verified_bundle(
    spec: BundleSpec,
    *,
    checks: Sequence[HandlerCheck],
    verify: bool = True,
    log: Callable[[str], None] = _log,
) -> VerifiedBundle:
    """Build (or reuse) the bundle, verify its handlers, and return it as a Lambda asset."""
    # A package with no wheel for the target stops here (MissingWheelError names it): there is no Docker
    # fallback, since a bundle built elsewhere would reach an environment without this verification.
    result = build_bundle(spec, log=log)
    log(result.summary(sorted({c.function for c in checks})))
    for warning in result.limit_warnings():
        log(f"[bundle] WARNING: {warning}")
    verified: bool | cdk.IResolvable = False
    if verify:
        verified = cdk.Lazy.any(_VerifiedFlag(_start_verification(spec, result, checks, log)))
    else:
        log(
            "[bundle] WARNING: handler verification SKIPPED (skip_bundle_verification): nothing proves "
            "this bundle imports; the pre-traffic hook is the only remaining check"
        )

    def new_code() -> lambda_.Code:
        return lambda_.Code.from_asset(
            str(result.zip_path), asset_hash=result.asset_hash, asset_hash_type=AssetHashType.CUSTOM
        )

    return VerifiedBundle(result=result, code=new_code(), verified=verified, new_code=new_code)


def start_checks_early(
    spec: BundleSpec, *, checks: Sequence[HandlerCheck], log: Callable[[str], None] = _log
) -> None:
    """Build the bundle and start its checks now, before the stack that uses it exists.

    An app with several environments builds its stacks one after the other; started here, every
    environment's checks run from the start of synth instead of from its stack's turn. The stack's own
    verified_bundle() call later is a cache hit whose checks are already running (one verification per
    key). A failure to build is left for that call to report, with its usual message.
    """
    try:
        result = build_bundle(spec, log=log)
    except BundlingError:
        return
    if not result.cache_hit:  # the stack's own line will say "cache hit": this one says what was built
        log(result.summary(sorted({c.function for c in checks})))
    _start_verification(spec, result, checks, log)


# Verification runs in the background: its interpreters import the handlers while synth goes on building
# the rest of the app (the waiting is all I/O: the checks are separate processes). Every caller that builds
# bundles must call join_verifications() before it uses the result: build_app does by default; app.py's
# main() joins after synth has written the assembly, and withdraws the assembly when a check failed.
_pending: dict[str, Future[None]] = {}
_pending_lock = threading.Lock()
_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="bundle-verify")


def _start_verification(
    spec: BundleSpec, result: BundleResult, checks: Sequence[HandlerCheck], log: Callable[[str], None]
) -> Future[None]:
    key = json.dumps([result.asset_hash, spec.architecture, _checks_identity(checks)])
    with _pending_lock:
        if key not in _pending:  # one bundle shared by several stacks is verified once
            _pending[key] = _pool.submit(_verify_once, spec, result, checks, log)
        return _pending[key]


def _checks_identity(checks: Sequence[HandlerCheck]) -> list[object]:
    """Everything of the checks that changes what a verification proves (HandlerCheck's every field)."""
    return [dataclasses.astuple(c) for c in checks]


def pending_verifications() -> int:
    with _pending_lock:
        return sum(1 for future in _pending.values() if not future.done())


def join_verifications() -> None:
    """Wait for every verification started so far; raise one BundlingError naming every failure."""
    with _pending_lock:
        futures = list(_pending.values())
        _pending.clear()
    errors: list[str] = []
    for future in futures:
        try:
            future.result()
        except BundlingError as exc:
            errors.append(str(exc))
        except Exception as exc:  # a check that broke is a check that did not pass
            errors.append(f"bundle verification could not run: {type(exc).__name__}: {exc}")
    if errors:
        raise BundlingError("\n".join(dict.fromkeys(errors)))


def _verify_once(
    spec: BundleSpec, result: BundleResult, checks: Sequence[HandlerCheck], log: Callable[[str], None]
) -> None:
    target = result
    if spec.architecture != _HOST_ARCH:
        # Native wheels for another architecture cannot load here. Verify a twin built from the same
        # source and requirements for this host: it catches a missing dependency, a broken export and
        # stale code, none of which is architecture-specific.
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
                _checks_identity(checks),
            ]
        ).encode()
    ).hexdigest()[:16]
    marker = target.directory.parent / f"verified-{key}"
    if marker.exists():
        return  # the same bundle already passed the same checks in the same interpreter
    done = verify_bundle(target, spec, checks, interpreter=interpreter)
    marker.write_text("ok\n")
    log(done.summary(spec.runtime))
