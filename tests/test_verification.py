"""Verification of a built bundle: the three outages, and their cousins, stop synth naming the function,
module and hint; checks run off the critical path and are joined before synth ends."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from stacks.bundling.build import build_bundle
from stacks.bundling.spec import BundleResult, BundlingError
from stacks.bundling.verification import verify_bundle
from tests.conftest import MINI_BACKEND
from tests.test_bundling import CHECKS, spec_for, unpacked


@pytest.fixture(scope="module")
def built(shared_cache: Path) -> BundleResult:
    return build_bundle(spec_for(MINI_BACKEND, shared_cache))


# ---------------------------------------------------------------------------------------------------------
# Verification: the three outages, and their cousins, stop synth with function, module and hint


def _verify(backend: Path, cache: Path) -> str:
    spec = spec_for(backend, cache)
    with pytest.raises(BundlingError) as caught:
        verify_bundle(build_bundle(spec), spec, CHECKS)
    return str(caught.value)


def test_good_bundle_verifies(built: BundleResult) -> None:
    from tests.conftest import MINI_BACKEND

    verify_bundle(built, spec_for(MINI_BACKEND, built.directory.parents[2]), CHECKS)


def test_missing_dependency_names_function_module_and_requirements(
    mini_backend: Path, shared_cache: Path
) -> None:
    (mini_backend / "requirements.txt").write_text("fastapi==0.115.6\n")
    message = _verify(mini_backend, shared_cache)
    # Stopped by the import closure at build, before any interpreter runs: file:line and the function
    assert (
        "handler.py:2: No module named 'mangum' (at module level; reached by function BackendApi)" in message
    )
    assert f"mangum is not in {mini_backend / 'requirements.txt'}: add it there (pinned)" in message
    assert "Worker" not in message, "the worker does not import mangum"
    # Without the functions (BundleSpec.handlers empty), imports inside functions of every file are checked
    (mini_backend / "src" / "tool.py").write_text("def run():\n    import mangum\n")
    spec = spec_for(mini_backend, shared_cache, handlers=())
    with pytest.raises(
        BundlingError, match=r"tool\.py:2: No module named 'mangum' \(inside a function; functions"
    ):
        build_bundle(spec)


def test_shared_module_missing_export_names_module_and_symbol(mini_backend: Path, shared_cache: Path) -> None:
    (mini_backend / "src" / "shared_pkg" / "__init__.py").write_text(
        "class OtherError(Exception):\n    pass\n"
    )
    message = _verify(mini_backend, shared_cache)
    for file, line in (("handler.py", 3), ("worker.py", 1), ("campaign_scheduler.py", 1)):
        assert f"{file}:{line}: cannot import name 'SharedError' from 'shared_pkg'" in message
    assert "reached by function BackendApi)" in message and "reached by function Worker)" in message
    assert "module shared_pkg (shared_pkg/__init__.py) no longer defines SharedError" in message


def test_verification_names_function_module_and_hint(built: BundleResult, tmp_path: Path) -> None:
    # The interpreter check behind the static one: a bundle whose installed package went missing
    from tests.conftest import MINI_BACKEND

    copy = unpacked(built, tmp_path / "bundle")
    shutil.rmtree(copy / "mangum")
    broken = replace(built, directory=copy, layer=None)
    with pytest.raises(BundlingError) as caught:
        verify_bundle(broken, spec_for(MINI_BACKEND, tmp_path), CHECKS)
    message = str(caught.value)
    assert "function BackendApi (handler handler.lambda_handler)" in message
    assert "ModuleNotFoundError: No module named 'mangum'" in message
    assert "mangum is listed in" in message
    assert "function Worker" not in message, "the worker does not import mangum"


def test_syntax_error_names_file_and_line(mini_backend: Path, shared_cache: Path) -> None:
    (mini_backend / "src" / "worker.py").write_text("def lambda_handler(event, context)\n    return 1\n")
    message = _verify(mini_backend, shared_cache)
    assert "function Worker (handler worker.lambda_handler): SyntaxError" in message
    assert "worker.py line 1" in message
    assert "function BackendApi" not in message


def test_missing_handler_attribute_names_the_setting(mini_backend: Path, shared_cache: Path) -> None:
    (mini_backend / "src" / "campaign_scheduler.py").write_text(
        "def handler(event, context):\n    return 1\n"
    )
    message = _verify(mini_backend, shared_cache)
    assert "function CampaignScheduler (handler campaign_scheduler.lambda_handler): AttributeError" in message
    assert "module campaign_scheduler has no attribute lambda_handler" in message


def test_unhealthy_api_stops_synth(mini_backend: Path, shared_cache: Path) -> None:
    handler = mini_backend / "src" / "handler.py"
    handler.write_text(
        handler.read_text().replace(
            'return {"status": "healthy"', 'raise RuntimeError("db down")\n    return {"status": "healthy"'
        )
    )
    message = _verify(mini_backend, shared_cache)
    assert "function BackendApi" in message and "GET /health returned 500" in message


# ---------------------------------------------------------------------------------------------------------
# Verification off the critical path: started when the bundle exists, joined before synth ends


def test_verification_runs_in_the_background_and_the_join_raises_its_failure(
    mini_backend: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from stacks.constructs import lambda_bundle

    # A failure only running the code shows (the static import closure passes it at build time).
    handler = mini_backend / "src" / "handler.py"
    handler.write_text(handler.read_text() + "\nraise RuntimeError('settings missing at import')\n")
    release = threading.Event()
    calls: list[str] = []
    from stacks.bundling.verification import verify_bundle as real_verify

    def held(*args: object, **kwargs: object) -> None:
        calls.append("verify")
        assert release.wait(60)
        real_verify(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(lambda_bundle, "verify_bundle", held)
    spec = spec_for(mini_backend, shared_cache)
    # WHEN two stacks ask for the same bundle, THEN both return while its verification is still running
    for _stack in ("staging", "prod"):
        lambda_bundle.verified_bundle(spec, checks=CHECKS, log=lambda _m: None)
    assert lambda_bundle.pending_verifications() == 1, "one shared bundle is verified once, in the background"
    release.set()
    # AND the join raises the failure with the same message a synchronous check gave
    with pytest.raises(BundlingError) as caught:
        lambda_bundle.join_verifications()
    message = str(caught.value)
    assert message.startswith("bundle verification failed (the bundle would not run on Lambda):")
    assert "function BackendApi (handler handler.lambda_handler)" in message
    assert "RuntimeError: settings missing at import" in message
    assert calls == ["verify"]
    lambda_bundle.join_verifications()  # nothing left pending: the failure is reported once


def test_checks_that_differ_in_any_field_are_each_verified(
    mini_backend: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace as replaced

    from stacks.constructs import lambda_bundle

    ran: list[str] = []
    monkeypatch.setattr(
        lambda_bundle, "_verify_once", lambda _spec, _result, checks, _log: ran.append(checks[0].health_path)
    )
    spec = spec_for(mini_backend, shared_cache)
    result = build_bundle(spec)
    # GIVEN two environments whose only difference is the API function's health path (or memory)
    for check in (CHECKS[0], replaced(CHECKS[0], health_path="/healthz"), replaced(CHECKS[0], memory_mb=512)):
        lambda_bundle._start_verification(spec, result, [check], lambda _m: None)
    lambda_bundle._start_verification(spec, result, [CHECKS[0]], lambda _m: None)  # a true repeat
    lambda_bundle.join_verifications()
    # THEN each distinct set of checks is verified once: none is mistaken for another
    assert sorted(ran) == ["/health", "/health", "/healthz"]


def test_checks_started_before_the_stacks_are_not_started_again(
    mini_backend: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stacks.constructs import lambda_bundle

    ran: list[tuple[str, ...]] = []
    monkeypatch.setattr(
        lambda_bundle,
        "_verify_once",
        lambda _spec, _result, checks, _log: ran.append(tuple(c.function for c in checks)),
    )
    handler = mini_backend / "src" / "handler.py"
    # A bundle no earlier run cached (the shared cache outlives a test session)
    handler.write_text(handler.read_text() + f"\n# built by the early start: {uuid.uuid4().hex}\n")
    spec = spec_for(mini_backend, shared_cache)
    logged: list[str] = []
    # GIVEN the bundle built and its checks started before any stack exists
    lambda_bundle.start_checks_early(spec, checks=CHECKS, log=logged.append)
    # WHEN the stack asks for the same bundle with the same checks
    made = lambda_bundle.verified_bundle(spec, checks=CHECKS, log=logged.append)
    lambda_bundle.join_verifications()
    # THEN it is a cache hit, its checks ran once, and the log still says what was built
    assert made.result.cache_hit and made.verified
    assert ran == [tuple(c.function for c in CHECKS)]
    assert any(" built " in line or "built on" in line for line in logged), logged


def test_an_early_start_leaves_a_build_failure_to_the_stack(mini_backend: Path, shared_cache: Path) -> None:
    from stacks.constructs import lambda_bundle

    (mini_backend / "src" / "handler.py").write_text("from nowhere_at_all import thing\n")
    spec = spec_for(mini_backend, shared_cache)
    lambda_bundle.start_checks_early(spec, checks=CHECKS, log=lambda _m: None)  # says nothing, raises nothing
    with pytest.raises(BundlingError, match="nowhere_at_all"):
        lambda_bundle.verified_bundle(spec, checks=CHECKS, log=lambda _m: None)
