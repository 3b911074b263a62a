# mypy: allow-untyped-defs, allow-incomplete-defs
# (pyproject relaxes tests.* like this, but mypy names these files without the tests. prefix)
"""scripts/deploy_guard.py: staging and prod refuse every deploy mode bypassing CloudFormation/CodeDeploy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import deploy_guard

SCRIPTS = Path(deploy_guard.__file__).parent


@pytest.mark.parametrize(
    "argv",
    [
        ["credmate-backend-prod", "--hotswap"],
        ["credmate-backend-prod", "--hotswap-fallback"],
        ["credmate-backend-staging", "--hotswap=true"],
        ["credmate-backend-prod", "credmate-backend-prod-policy", "--watch"],
        ["watch", "credmate-backend-prod"],
        ["deploy", "--all", "--hotswap"],
        ["--hotswap"],  # no stack named: cdk may deploy every stack, prod included
        ["credmate-backend-*", "--hotswap"],
        ["--require-approval", "never", "credmate-backend-prod", "--hotswap"],
    ],
)
def test_bypass_modes_are_refused_for_staging_and_prod(argv):
    refusals = deploy_guard.check(argv)
    assert refusals, argv
    assert all("not allowed" in r.reason for r in refusals)


@pytest.mark.parametrize(
    "argv",
    [
        ["credmate-backend-prod"],
        ["credmate-backend-prod", "credmate-backend-prod-policy", "--require-approval", "never"],
        ["credmate-backend-staging", "--hotswap=false"],
        ["credmate-backend-dev", "--hotswap"],  # a personal dev stack may hotswap
        ["watch", "credmate-backend-dev"],
        # "--require-approval" takes a value: "never" is not a stack name, and the stack is dev.
        ["--require-approval", "never", "credmate-backend-dev", "--hotswap"],
    ],
)
def test_normal_deploys_and_dev_stacks_are_allowed(argv):
    assert deploy_guard.check(argv) == []


def test_each_bypass_gets_its_own_reason_naming_the_stack():
    reasons = [r.reason for r in deploy_guard.check(["watch", "credmate-backend-prod", "--hotswap"])]
    assert len(reasons) == 2
    assert reasons[0].startswith("--hotswap is not allowed for credmate-backend-prod")
    assert "CodeDeploy canary" in reasons[0]
    assert reasons[1].startswith("`cdk watch` is not allowed for credmate-backend-prod")


def test_main_exits_non_zero_with_a_message(capsys):
    assert deploy_guard.main(["credmate-backend-prod", "--hotswap"]) == 2
    err = capsys.readouterr().err
    assert "refusing to deploy" in err and "docs/guardrails.md" in err
    assert deploy_guard.main(["credmate-backend-prod"]) == 0


def test_the_make_target_invocation_blocks_before_cdk_runs():
    """As `make deploy ENV=prod CDK_ARGS=--hotswap` runs it: a separate process, non-zero exit."""
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "deploy_guard.py"), "credmate-backend-prod", "--hotswap"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and "--hotswap is not allowed" in done.stderr
