"""Trust in a verification: whatever breaks in a check fails synth, the template says verified only after a
pass, and the verifier's report cannot be confused with what a handler prints."""

from __future__ import annotations

import threading
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from stacks.bundling.build import build_bundle
from stacks.bundling.spec import BundlingError, HandlerCheck
from stacks.bundling.verification import verify_bundle
from stacks.constructs import lambda_bundle
from tests.test_bundling import CHECKS, spec_for


def _template_flag(bundle: lambda_bundle.VerifiedBundle) -> object:
    app = cdk.App()
    stack = cdk.Stack(app, "Flag")
    cdk.CfnResource(stack, "Topic", type="AWS::SNS::Topic")
    stack.template_options.metadata = {"CredmateBundles": [{"verified": bundle.verified}]}
    return Template.from_stack(stack).to_json()["Metadata"]["CredmateBundles"][0]["verified"]


def test_a_check_that_breaks_with_any_exception_fails_the_join_and_is_never_recorded_verified(
    mini_backend: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object) -> None:
        raise KeyError("ok")  # what a verifier confused by a handler's stdout raised before

    monkeypatch.setattr(lambda_bundle, "_verify_once", broken)
    made = lambda_bundle.verified_bundle(
        spec_for(mini_backend, shared_cache), checks=CHECKS, log=lambda _m: None
    )
    assert _template_flag(made) is False
    with pytest.raises(BundlingError, match="could not run: KeyError: 'ok'"):
        lambda_bundle.join_verifications()


def test_the_template_says_verified_only_once_the_check_passed(
    mini_backend: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    monkeypatch.setattr(lambda_bundle, "_verify_once", lambda *_args: release.wait(60) and None)
    made = lambda_bundle.verified_bundle(
        spec_for(mini_backend, shared_cache), checks=CHECKS, log=lambda _m: None
    )
    # WHILE the check is still running, the flag cannot resolve: writing the template waits for it
    resolved: list[object] = []
    writer = threading.Thread(target=lambda: resolved.append(_template_flag(made)))
    writer.start()
    writer.join(2)
    assert resolved == [], "the template was written before its bundle's verification finished"
    release.set()
    writer.join(60)
    assert resolved == [True]
    lambda_bundle.join_verifications()


def test_skipped_verification_is_recorded_unverified(mini_backend: Path, shared_cache: Path) -> None:
    spec = spec_for(mini_backend, shared_cache)
    made = lambda_bundle.verified_bundle(spec, checks=CHECKS, verify=False, log=lambda _m: None)
    assert made.verified is False


def test_a_handler_that_prints_json_at_exit_does_not_confuse_the_verifier(
    mini_backend: Path, shared_cache: Path
) -> None:
    # GIVEN a handler module that prints JSON lines to stdout at import and at interpreter exit
    handler = mini_backend / "src" / "handler.py"
    handler.write_text(
        "import atexit, json\n"
        'print(json.dumps({"status": "booting"}))\n'
        'atexit.register(lambda: print(json.dumps({"metrics": 1})))\n' + handler.read_text()
    )
    spec = spec_for(mini_backend, shared_cache)
    # THEN it verifies (before: KeyError 'ok', the last `{` line was the handler's)
    done = verify_bundle(build_bundle(spec), spec, CHECKS[:1], reuse=False)
    assert done.ran == ("BackendApi",)


def test_a_handler_that_exits_at_import_is_reported_as_a_crash(
    mini_backend: Path, shared_cache: Path
) -> None:
    worker = mini_backend / "src" / "worker.py"
    worker.write_text('import json, os\nprint(json.dumps({"ok": True}), flush=True)\nos._exit(0)\n')
    spec = spec_for(mini_backend, shared_cache)
    with pytest.raises(
        BundlingError, match=r"function Worker .*the verifier crashed \(exit 0\) before it reported"
    ):
        verify_bundle(build_bundle(spec), spec, CHECKS[1:2], reuse=False)


def test_functions_sharing_a_handler_and_environment_are_verified_once_each_handler_in_its_own_run(
    mini_backend: Path, shared_cache: Path
) -> None:
    label = ("CREDMATE_FUNCTION_LABEL",)
    checks = [
        HandlerCheck(
            function=f"Fn{i}",
            handler=handler,
            environment=(("CREDMATE_FUNCTION_LABEL", f"Fn{i}"), ("STAGE", "test")),
            label_variables=label,
        )
        for i, handler in enumerate(["worker.lambda_handler", "campaign_scheduler.lambda_handler"] * 5)
    ]
    spec = spec_for(mini_backend, shared_cache)
    done = verify_bundle(build_bundle(spec), spec, checks, reuse=False)
    # THEN 10 functions on 2 handlers make 2 interpreter runs, and the others are reported as shared
    assert done.ran == ("Fn0", "Fn1")
    assert dict(done.shared) == {f"Fn{i}": f"Fn{i % 2}" for i in range(2, 10)}
    line = done.summary("python3.11")
    assert "\n" not in line and "verified 2 handler(s)" in line and "Fn9 by Fn1" in line
    # AND a variable other than the label keeps checks apart
    apart = [checks[0], HandlerCheck(**{**checks[2].__dict__, "environment": (("STAGE", "prod"),)})]
    assert verify_bundle(build_bundle(spec), spec, apart, reuse=False).ran == ("Fn0", "Fn2")
