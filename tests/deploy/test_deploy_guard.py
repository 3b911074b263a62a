# mypy: allow-untyped-defs, allow-incomplete-defs
# (pyproject relaxes tests.* like this, but mypy names these files without the tests. prefix)
"""scripts/deploy/guard.py: staging and prod refuse every deploy mode bypassing CloudFormation/CodeDeploy."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.deploy import guard as deploy_guard

REPO_ROOT = Path(deploy_guard.__file__).parents[2]
GUARD = [sys.executable, "-m", "scripts.deploy.guard"]


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
        [*GUARD, "credmate-backend-prod", "--hotswap"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and "--hotswap is not allowed" in done.stderr


# ---------------------------------------------------------------------------------------------------------
# Bundle verification in the synthesized assembly: prod refuses what staging only warns about


ZIP = b"PK the bundle's zip"


def verified(functions=("BackendApi", "Worker"), **overrides):
    return {
        "asset_hash": "5f27264bd8f6a1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
        "zip_sha256": hashlib.sha256(ZIP).hexdigest(),
        "verified": True,
        "functions": list(functions),
        **overrides,
    }


def write_template(assembly: Path, stack: str, bundles=None, *, metadata: bool = True) -> Path:
    """A synthesized stack as `cdk synth` writes it: its template, and the zip it uploads (asset manifest)."""
    assembly.mkdir(parents=True, exist_ok=True)
    template: dict[str, object] = {"Resources": {"Fn": {"Type": "AWS::Lambda::Function"}}}
    if metadata:
        template["Metadata"] = {"CredmateBundles": bundles if bundles is not None else [verified()]}
    path = assembly / f"{stack}.template.json"
    path.write_text(json.dumps(template))
    (assembly / "asset.abc.zip").write_bytes(ZIP)
    assets = {"files": {"abc": {"source": {"path": "asset.abc.zip", "packaging": "file"}}}}
    (assembly / f"{stack}.assets.json").write_text(json.dumps(assets))
    return path


def test_verified_bundles_deploy_to_prod(tmp_path, capsys):
    write_template(tmp_path, "credmate-backend-prod", [verified(), verified(("Scheduler",))])
    assert deploy_guard.main(["--assembly", str(tmp_path), "credmate-backend-prod"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("bundles", "metadata", "expected"),
    [
        ([verified(verified=False)], True, "was not verified at synth"),
        ([verified(), verified(("Worker",), verified=False)], True, "the bundle of Worker"),
        ([verified(verified="true")], True, "was not verified at synth"),  # only a JSON true counts
        (None, False, "records no bundle verification"),
        ([], True, "records no bundle verification"),
        (["not an object"], True, "is not an object"),
    ],
)
def test_prod_refuses_an_unverified_assembly(tmp_path, capsys, bundles, metadata, expected):
    write_template(tmp_path, "credmate-backend-prod", bundles, metadata=metadata)
    refusals, warnings = deploy_guard.check_assembly(tmp_path, ["credmate-backend-prod"])
    assert warnings == []
    assert refusals and all(r.reason.startswith("credmate-backend-prod: ") for r in refusals)
    assert any(expected in r.reason for r in refusals), refusals
    assert all("without `-c skip_bundle_verification=true`" in r.reason for r in refusals)

    assert deploy_guard.main(["--assembly", str(tmp_path), "credmate-backend-prod"]) == 2
    err = capsys.readouterr().err
    assert "refusing to deploy" in err and expected in err


def test_prod_refuses_a_zip_damaged_after_synth_or_a_bundle_without_its_digest(tmp_path):
    # GIVEN a verified assembly whose bundle zip in cdk.out changed after synth (a disk error, a hand edit)
    write_template(tmp_path, "credmate-backend-prod")
    assert deploy_guard.check_assembly(tmp_path, ["credmate-backend-prod"]) == ([], [])
    (tmp_path / "asset.abc.zip").write_bytes(ZIP + b"!")
    # THEN prod refuses it: verified means these bytes
    (refusal,) = deploy_guard.check_assembly(tmp_path, ["credmate-backend-prod"])[0]
    assert "no zip the assembly uploads is the one verified" in refusal.reason
    # AND a bundle entry recording no digest is refused too (an older or modified app wrote it)
    write_template(tmp_path, "credmate-backend-prod", [{**verified(), "zip_sha256": None}])
    (refusal,) = deploy_guard.check_assembly(tmp_path, ["credmate-backend-prod"])[0]
    assert "records no zip digest" in refusal.reason


def test_the_synthesized_bundle_zip_is_what_the_template_records(synthesized):
    # The real app: the zip each stack uploads has the digest its template's metadata records
    outdir = synthesized["outdir"]
    for stack in ("credmate-backend-prod", "credmate-backend-staging"):
        assert deploy_guard.bundle_problems(outdir / f"{stack}.template.json", stack) == []


def test_refusal_names_the_functions_and_asset(tmp_path):
    write_template(tmp_path, "credmate-backend-prod", [verified(("BackendApi", "Worker"), verified=False)])
    (refusal,) = deploy_guard.check_assembly(tmp_path, ["credmate-backend-prod"])[0]
    assert "the bundle of BackendApi, Worker (asset 5f27264bd8f6)" in refusal.reason


def test_prod_refuses_a_missing_template(tmp_path):
    (refusal,) = deploy_guard.check_assembly(tmp_path, ["credmate-backend-prod"])[0]
    assert "no synthesized template at" in refusal.reason and "credmate-backend-prod.template.json" in (
        refusal.reason
    )


def test_staging_only_warns(tmp_path, capsys):
    write_template(tmp_path, "credmate-backend-staging", [verified(verified=False)])
    refusals, warnings = deploy_guard.check_assembly(tmp_path, ["credmate-backend-staging"])
    assert refusals == [] and len(warnings) == 1
    assert deploy_guard.main(["--assembly", str(tmp_path), "credmate-backend-staging"]) == 0
    err = capsys.readouterr().err
    assert "WARNING: credmate-backend-staging: the bundle of BackendApi, Worker" in err
    assert "not verified at synth" in err


def test_only_the_targeted_stacks_templates_are_read(tmp_path):
    write_template(tmp_path, "credmate-backend-staging", [verified(verified=False)])
    write_template(tmp_path, "credmate-backend-prod")
    assert deploy_guard.check_assembly(
        tmp_path, ["credmate-backend-prod", "credmate-backend-prod-policy"]
    ) == (
        [],
        [],
    )
    # A personal dev stack is never checked.
    assert deploy_guard.check_assembly(tmp_path, ["credmate-backend-dev"]) == ([], [])


@pytest.mark.parametrize(
    "argv",
    [
        ["credmate-backend-prod", "-c", "skip_bundle_verification=true"],
        ["--context", "skip_bundle_verification=1", "credmate-backend-prod"],
        ["--context=skip_bundle_verification=true", "credmate-backend-prod"],
        ["--all", "-c", "skip_bundle_verification=true"],
    ],
)
def test_prod_refuses_the_skip_flag_before_synth(argv):
    (refusal,) = deploy_guard.check_context(argv)
    assert "skip_bundle_verification" in refusal.reason and "credmate-backend-prod" in refusal.reason
    assert deploy_guard.main(argv) == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["credmate-backend-staging", "-c", "skip_bundle_verification=true"],
        ["credmate-backend-prod", "-c", "skip_bundle_verification=false"],
        ["credmate-backend-prod", "-c", "backend_root=other"],
    ],
)
def test_skip_flag_allowed_elsewhere(argv):
    assert deploy_guard.check_context(argv) == []


def test_make_deploy_checks_the_assembly_it_then_deploys():
    """The Makefile's deploy recipe: synth, the assembly check, then `cdk deploy` of that same assembly."""
    makefile = (REPO_ROOT / "Makefile").read_text()
    recipe = makefile.split("\ndeploy:", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    commands = [ln.strip() for ln in recipe if not ln.strip().startswith("@#")]
    synth = next(i for i, c in enumerate(commands) if " synth " in c)
    guard = next(i for i, c in enumerate(commands) if "scripts.deploy.guard --assembly cdk.out" in c)
    deploy = next(i for i, c in enumerate(commands) if " deploy " in c and "scripts.deploy.guard" not in c)
    assert synth < guard < deploy
    assert "--app cdk.out" in commands[deploy]


def test_the_assembly_check_as_a_separate_process(tmp_path):
    write_template(tmp_path, "credmate-backend-prod", [verified(verified=False)])
    done = subprocess.run(
        [
            *GUARD,
            "--assembly",
            str(tmp_path),
            "credmate-backend-prod",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and "not verified at synth" in done.stderr
