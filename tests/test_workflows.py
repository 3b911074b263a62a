# mypy: allow-untyped-defs, allow-incomplete-defs
# (pyproject relaxes tests.* like this, but mypy names these files without the tests. prefix)
"""The GitHub Actions workflows: they parse, call only make targets that exist, use OIDC roles (never stored
keys), pin every action to a commit, comment once per environment, and deploy staging before prod, one
deploy at a time."""

from __future__ import annotations

import json
import re
import shlex
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
    assert str(python["with"]["python-version"]) == "3.11" and str(node["with"]["node-version"]) == "20"


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
