# mypy: allow-untyped-defs, allow-incomplete-defs
# (pyproject relaxes tests.* like this, but mypy names these files without the tests. prefix)
"""The GitHub Actions workflows: they pass GitHub's workflow schema as `make lint` checks it, parse, call only
make targets that exist, use OIDC roles (never stored keys), pin every action to a commit, comment once per
environment, and deploy staging before prod, one deploy at a time. And the toolchain they rely on: the Node
pinned in package.json is the one make, pytest and jsii run."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO_ROOT / ".github" / "workflows"
MAKEFILE = REPO_ROOT / "Makefile"
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
LONG_LIVED_KEYS = re.compile(
    r"AWS_ACCESS_KEY_ID|AWS_SECRET_ACCESS_KEY|aws-access-key-id|aws-secret-access-key", re.IGNORECASE
)


def pinned_node_major() -> int:
    """The major version of the `node` npm package pinned in package.json."""
    pin = json.loads((REPO_ROOT / "package.json").read_text())["devDependencies"]["node"]
    return int(re.match(r"\D*(\d+)", pin)[1])  # type: ignore[index]


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(data, dict), f"{name}: not a YAML mapping"
    return data


def triggers(workflow: dict[Any, Any]) -> Any:
    # YAML 1.1 reads the bare key `on` as the boolean True.
    return workflow.get("on", workflow.get(True))


def steps(workflow: dict[str, Any], job: str | None = None) -> list[dict[str, Any]]:
    jobs = [workflow["jobs"][job]] if job else list(workflow["jobs"].values())
    return [step for j in jobs for step in j.get("steps", [])]


def run_lines(workflow: dict[str, Any], job: str | None = None) -> list[str]:
    return [
        ln.strip() for step in steps(workflow, job) if "run" in step for ln in str(step["run"]).splitlines()
    ]


def make_targets() -> set[str]:
    """Targets of the Makefile, read at test time (rules, not variable assignments)."""
    if not MAKEFILE.is_file():
        pytest.fail(f"{MAKEFILE} is missing: the workflows call make targets")
    targets: set[str] = set()
    for line in MAKEFILE.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.%/-]+(?:\s+[A-Za-z0-9_.%/-]+)*)\s*:(?![:=])", line)
        if match and not line.startswith("\t"):
            targets.update(match.group(1).split())
    return targets


def make_calls(line: str) -> list[tuple[str, list[str]]]:
    """(target, variable assignments) for each `make` in a shell line."""
    calls = []
    for command in re.split(r"&&|\|\||;|\|", line):
        words = shlex.split(command.replace("${{", "'${{").replace("}}", "}}'"))
        if words and words[0] == "make":
            args = words[1:]
            goals = [a for a in args if "=" not in a and not a.startswith("-")]
            calls += [(goal, [a for a in args if "=" in a]) for goal in goals or ["<default>"]]
    return calls


@pytest.fixture(scope="module", params=["pr.yml", "deploy.yml"])
def workflow_name(request) -> str:
    return str(request.param)


def test_workflow_parses_and_has_jobs(workflow_name):
    workflow = load(workflow_name)
    assert workflow.get("name") and triggers(workflow) and workflow.get("jobs")
    for job_name, job in workflow["jobs"].items():
        assert job.get("runs-on") and job.get("steps"), (
            f"{workflow_name}: job {job_name} has no runner or steps"
        )
        assert job.get("timeout-minutes"), f"{workflow_name}: job {job_name} needs timeout-minutes"


def test_every_make_call_uses_an_existing_target(workflow_name):
    targets = make_targets()
    calls = [call for line in run_lines(load(workflow_name)) for call in make_calls(line)]
    assert calls, f"{workflow_name}: no make call found"
    missing = sorted({goal for goal, _ in calls if goal not in targets})
    assert not missing, (
        f"{workflow_name}: make target(s) {missing} not in {MAKEFILE} (targets: {sorted(targets)})"
    )


def test_no_long_lived_keys_and_oidc_roles_only(workflow_name):
    text = (WORKFLOWS / workflow_name).read_text()
    assert not LONG_LIVED_KEYS.search(text), f"{workflow_name}: long-lived AWS keys; use an OIDC role"
    assert "secrets.AWS" not in text
    workflow = load(workflow_name)
    assert workflow["permissions"]["id-token"] == "write"
    assert workflow["permissions"]["contents"] == "read"
    aws = [
        s
        for s in steps(workflow)
        if str(s.get("uses", "")).startswith("aws-actions/configure-aws-credentials@")
    ]
    assert aws, f"{workflow_name}: no configure-aws-credentials step"
    for step in aws:
        assert str(step["with"]["role-to-assume"]).startswith("${{ vars."), step
        assert "aws-region" in step["with"]


def test_every_action_is_pinned_to_a_commit(workflow_name):
    for step in steps(load(workflow_name)):
        if "uses" in step:
            assert PINNED.match(step["uses"]), (
                f"{workflow_name}: {step['uses']} is not pinned to a commit SHA"
            )


def test_make_call_parser():
    assert make_calls("make diff BASE=origin/${{ github.base_ref }}") == [
        ("diff", ["BASE=origin/${{ github.base_ref }}"])
    ]
    assert make_calls("make deploy ENV=prod && make wait-deployments ENV=prod") == [
        ("deploy", ["ENV=prod"]),
        ("wait-deployments", ["ENV=prod"]),
    ]
    assert make_calls("cat x >> y || true") == []


# ---------------------------------------------------------------------------------------------------------
# Pull requests


def environment_stacks() -> list[str]:
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    return [f"credmate-backend-{env}" for env in context["environments"]]


def test_pr_runs_tests_synth_and_diff():
    pr = load("pr.yml")
    assert "pull_request" in triggers(pr)
    assert pr["permissions"]["pull-requests"] == "write"
    lines = run_lines(pr)
    for needed in ("make test", "make synth", "make diff"):
        assert any(ln.startswith(needed) for ln in lines), f"pr.yml: no `{needed}`"
    assert lines.index("make test") < lines.index("make synth") < lines.index("make diff")
    assert "make diff BASE=origin/${{ github.base_ref }}" in lines
    checkout = next(s for s in steps(pr) if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0, "the offline diff needs the base branch's history"
    python = next(s for s in steps(pr) if s.get("uses", "").startswith("actions/setup-python@"))
    node = next(s for s in steps(pr) if s.get("uses", "").startswith("actions/setup-node@"))
    assert str(python["with"]["python-version"]) == "3.11"
    assert str(node["with"]["node-version"]) == str(pinned_node_major())


def test_pr_diff_mode_follows_the_diff_role_variable():
    pr = load("pr.yml")
    by_run = {s.get("run"): s for s in steps(pr)}
    deployed, offline = by_run["make diff"], by_run["make diff BASE=origin/${{ github.base_ref }}"]
    assert "vars.DIFF_ROLE_ARN != ''" in deployed["if"] and "vars.DIFF_ROLE_ARN == ''" in offline["if"]
    aws = next(s for s in steps(pr) if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@"))
    assert aws["if"] == deployed["if"] and aws["with"]["role-to-assume"] == "${{ vars.DIFF_ROLE_ARN }}"


def test_pr_has_one_sticky_comment_per_environment():
    pr = load("pr.yml")
    comments = [
        s for s in steps(pr) if s.get("uses", "").startswith("marocchino/sticky-pull-request-comment@")
    ]
    headers = [c["with"]["header"] for c in comments]
    assert len(headers) == len(set(headers)), "each environment needs its own header, or comments overwrite"
    paths = {c["with"]["path"] for c in comments}
    assert paths == {f"cdk.out/diff/{stack}.md" for stack in environment_stacks()}


# ---------------------------------------------------------------------------------------------------------
# Deploys


def test_deploy_on_push_to_main_one_at_a_time():
    deploy = load("deploy.yml")
    assert triggers(deploy)["push"]["branches"] == ["main"]
    assert deploy["concurrency"]["group"] == "deploy"
    assert deploy["concurrency"]["cancel-in-progress"] is False


def test_staging_deploys_and_waits_then_prod_after_approval():
    deploy = load("deploy.yml")
    staging, prod = deploy["jobs"]["staging"], deploy["jobs"]["prod"]
    assert staging["environment"] == "staging"
    assert prod["environment"] == "production"
    assert prod["needs"] in ("staging", ["staging"])
    staging_lines = run_lines(deploy, "staging")
    assert staging_lines.index("make deploy ENV=staging") < staging_lines.index(
        "make wait-deployments ENV=staging"
    )
    assert "make deploy ENV=prod" in run_lines(deploy, "prod")
    assert not any("ENV=prod" in ln for ln in staging_lines)
    roles = {
        job: next(
            s["with"]["role-to-assume"]
            for s in steps(deploy, job)
            if "with" in s and "role-to-assume" in s["with"]
        )
        for job in ("staging", "prod")
    }
    assert roles == {
        "staging": "${{ vars.STAGING_DEPLOY_ROLE_ARN }}",
        "prod": "${{ vars.PROD_DEPLOY_ROLE_ARN }}",
    }


def job_needs(workflow: dict[str, Any], job: str) -> set[str]:
    """Every job `job` waits for, directly or through other jobs."""
    found: set[str] = set()
    todo = [job]
    while todo:
        needs = workflow["jobs"][todo.pop()].get("needs", [])
        for need in [needs] if isinstance(needs, str) else needs:
            if need not in found:
                found.add(need)
                todo.append(need)
    return found


def test_every_deploy_runs_the_tests_first():
    """No job deploys unless `make test` passed on the same commit: earlier in the job, or in a job it needs
    (before any AWS role is assumed when in the same job)."""
    deploy = load("deploy.yml")
    deploying = [
        job
        for job in deploy["jobs"]
        if any(goal == "deploy" for ln in run_lines(deploy, job) for goal, _ in make_calls(ln))
    ]
    assert sorted(deploying) == ["prod", "staging"]
    for job in deploying:
        job_steps = steps(deploy, job)

        def index(pred, job_steps=job_steps):
            return next((i for i, s in enumerate(job_steps) if pred(s)), None)

        tested_here = index(lambda s: any(g == "test" for g, _ in make_calls(str(s.get("run", "")))))
        deploys_at = index(lambda s: any(g == "deploy" for g, _ in make_calls(str(s.get("run", "")))))
        tested_before = any(
            any(g == "test" for ln in run_lines(deploy, need) for g, _ in make_calls(ln))
            for need in job_needs(deploy, job)
        )
        assert tested_before or (tested_here is not None and tested_here < deploys_at), (
            f"deploy.yml: job {job} deploys without `make test` before it"
        )
        if tested_here is not None:
            credentials = index(lambda s: "configure-aws-credentials" in str(s.get("uses", "")))
            assert credentials is None or tested_here < credentials, (
                f"deploy.yml: job {job} runs the tests with AWS credentials already configured"
            )
            assert not job_steps[tested_here].get("continue-on-error"), f"job {job}: tests must gate"
            assert not job_steps[tested_here].get("if"), f"job {job}: the tests must always run"


def test_setup_node_bootstraps_the_pinned_major(workflow_name):
    workflow = load(workflow_name)
    nodes = [s for s in steps(workflow) if str(s.get("uses", "")).startswith("actions/setup-node@")]
    assert nodes, f"{workflow_name}: no setup-node step"
    assert {str(s["with"]["node-version"]) for s in nodes} == {str(pinned_node_major())}
    assert "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION" not in (WORKFLOWS / workflow_name).read_text()


# ---------------------------------------------------------------------------------------------------------
# Workflow schema (`make lint` runs @action-validator/cli on every workflow)


def lint_workflows(*files: Path) -> subprocess.CompletedProcess[str]:
    """The Makefile's own lint-workflows target, on the given files."""
    names = " ".join(str(f) for f in files)
    return subprocess.run(
        # -o: never run `npm ci` from a test (setup is make's job, before pytest)
        [
            "make",
            "-s",
            "-C",
            str(REPO_ROOT),
            "-o",
            "node_modules/.installed",
            "lint-workflows",
            f"WORKFLOWS={names}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def test_make_lint_validates_the_workflows():
    assert re.search(r"^lint:.*\n(?:\t.*\n)*\t.*lint-workflows", MAKEFILE.read_text(), re.M), (
        "`make lint` must run lint-workflows"
    )
    result = lint_workflows(*sorted(WORKFLOWS.glob("*.yml")))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("broken", "error"),
    [
        (("runs-on: ubuntu-latest", "runs-onn: ubuntu-latest"), "Additional property 'runs-onn'"),
        (("timeout-minutes: 30", "timeout-minutes: [30]"), "timeout-minutes"),
    ],
)
def test_a_schema_error_fails_make_lint(tmp_path, broken, error):
    text = (WORKFLOWS / "pr.yml").read_text()
    assert broken[0] in text
    bad = tmp_path / "pr.yml"
    bad.write_text(text.replace(broken[0], broken[1], 1))
    assert yaml.safe_load(bad.read_text())  # still YAML: only the schema catches it
    result = lint_workflows(WORKFLOWS / "deploy.yml", bad)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert error in output and f"{bad}: not a valid workflow" in output


# ---------------------------------------------------------------------------------------------------------
# The pinned Node


def _major(node: str) -> int:
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    return int(version.strip().lstrip("v").split(".")[0])


def test_package_json_pins_a_supported_node_and_the_cdk_cli():
    dev = json.loads((REPO_ROOT / "package.json").read_text())["devDependencies"]
    assert pinned_node_major() >= 22
    assert dev["aws-cdk"].startswith("2.1148."), "the 3.x CLI cannot read these cloud assemblies"
    assert dev["@aws-cdk/cloudformation-diff"].startswith("2.")
    assert re.fullmatch(r"\d+\.\d+\.\d+", dev["@action-validator/cli"])


def test_make_puts_the_pinned_node_first():
    result = subprocess.run(
        ["make", "-s", "-C", str(REPO_ROOT), "--eval", "print-node:\n\t@command -v node", "print-node"],
        capture_output=True,
        text=True,
        check=True,
    )
    node = result.stdout.strip()
    assert Path(node) == REPO_ROOT / "node_modules" / ".bin" / "node"
    assert _major(node) == pinned_node_major()


def test_jsii_runs_the_pinned_node():
    import aws_cdk

    aws_cdk.App()  # the jsii kernel is a child process of this one
    kernels = []
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and "jsii" in cmdline:
            kernels.append(Path(os.readlink(proc / "exe")))
    assert kernels, "no jsii kernel process found under this test process"
    pinned = (REPO_ROOT / "node_modules" / ".bin" / "node").resolve()
    assert {k.resolve() for k in kernels} == {pinned}
    assert _major(str(pinned)) >= 22 and shutil.which("node") is not None
