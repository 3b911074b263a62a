# mypy: allow-untyped-defs, allow-incomplete-defs
# (pyproject relaxes tests.* like this, but mypy names these files without the tests. prefix)
"""scripts.pr_diff.cli: argument handling, the base worktree's lifecycle and the reports it writes, with fake
synth/diff commands and CloudFormation faked by botocore's Stubber (no CDK, no AWS)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from scripts.pr_diff import cli as pr_diff
from scripts.pr_diff import render as diff_render
from tests.pr_diff.conftest import FIXTURES, STACK, load

# ---------------------------------------------------------------------------------------------------------
# scripts/pr_diff/cli.py: arguments and mode


@pytest.mark.parametrize(
    ("argv", "env", "mode"),
    [
        ([], {}, "offline"),
        ([], {"AWS_PROFILE": "ci"}, "deployed"),
        ([], {"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s"}, "deployed"),
        ([], {"AWS_ROLE_ARN": "arn:aws:iam::1:role/r", "AWS_WEB_IDENTITY_TOKEN_FILE": "/t"}, "deployed"),
        (["--offline"], {"AWS_PROFILE": "ci"}, "offline"),
        (["--base", "origin/main"], {"AWS_PROFILE": "ci"}, "offline"),
        ([], {"AWS_PROFILE": ""}, "offline"),
    ],
)
def test_mode(argv, env, mode):
    assert pr_diff.choose_mode(pr_diff.parse_args(argv), env) == mode


def test_parse_args():
    options = pr_diff.parse_args(["--base", "origin/main", "--stacks", "a, b,", "--out", "/tmp/x"])
    assert (options.base, options.stacks, options.out_dir) == ("origin/main", ("a", "b"), Path("/tmp/x"))
    with pytest.raises(pr_diff.UsageError, match="--base: empty git ref"):
        pr_diff.parse_args(["--base", " "])
    assert pr_diff.main(["--base", ""]) == 2


def _assembly(
    folder: Path, templates: dict[str, dict[str, Any]], policy: dict[str, Any] | None = None
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    artifacts = {}
    for stack, template in templates.items():
        (folder / f"{stack}.template.json").write_text(json.dumps(template))
        artifacts[stack] = {
            "type": "aws:cloudformation:stack",
            "properties": {"templateFile": f"{stack}.template.json"},
        }
        if policy is not None:
            (folder / f"{stack}.stack-policy.json").write_text(json.dumps(policy))
    artifacts["credmate-backend-prod-policy"] = {"type": "aws:cloudformation:stack"}
    artifacts["credmate-backend-prod.assets"] = {"type": "cdk:asset-manifest"}
    (folder / "manifest.json").write_text(json.dumps({"version": "55.0.0", "artifacts": artifacts}))


def test_environment_stacks_skip_policy_stacks_and_assets(tmp_path):
    _assembly(
        tmp_path, {"credmate-backend-prod": {"Resources": {}}, "credmate-backend-staging": {"Resources": {}}}
    )
    stacks = pr_diff.environment_stacks(tmp_path)
    assert stacks == ["credmate-backend-prod", "credmate-backend-staging"]
    assert pr_diff.select_stacks(stacks, ["credmate-backend-prod"]) == ["credmate-backend-prod"]
    with pytest.raises(
        pr_diff.UsageError, match=r"--stacks: credmate-backend-dev not in .*available: credmate"
    ):
        pr_diff.select_stacks(stacks, ["credmate-backend-dev"])
    with pytest.raises(pr_diff.PrDiffError, match=r"manifest\.json: cannot read"):
        pr_diff.environment_stacks(tmp_path / "missing")


def test_compose_report_cuts_long_diff_output():
    report = pr_diff.compose_report("s", "### `s`\n\nNo changes.", "x" * 100_000 + "```", "the base")
    assert report.startswith("<!-- credmate-lambda diff: s -->")
    assert "No changes." in report and "cut at 45000 characters" in report
    assert len(report) < 60_000
    assert report.count("```") == 2  # the output cannot close the code fence


# ---------------------------------------------------------------------------------------------------------
# scripts/pr_diff/cli.py: worktree and offline flow, on a throwaway git repository with fake cdk commands


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture
def repo(tmp_path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    _git(path, "init", "--quiet", "--initial-branch=main")
    (path / "app.py").write_text("print('base')\n")
    # the project's cdk.json: pr_diff reads the environments from it for the source-impact section
    (path / "cdk.json").write_text((Path(__file__).resolve().parents[2] / "cdk.json").read_text())
    _git(path, "add", "app.py", "cdk.json")
    _git(path, "commit", "--quiet", "-m", "base")
    (path / "app.py").write_text("print('head')\n")  # uncommitted head change
    for shared in pr_diff.SHARED_DIRS:
        (path / shared).mkdir()
    return path


def _worktrees(repo: Path) -> list[str]:
    return [
        ln for ln in _git(repo, "worktree", "list", "--porcelain").splitlines() if ln.startswith("worktree ")
    ]


def test_base_worktree_borrows_shared_dirs_and_is_always_removed(repo):
    with (
        pytest.raises(RuntimeError, match="boom"),
        pr_diff.base_worktree(repo, "main", pr_diff.run_process) as wt,
    ):
        assert (wt / "app.py").read_text() == "print('base')\n"
        for shared in pr_diff.SHARED_DIRS:
            assert (wt / shared).is_symlink() and (wt / shared).resolve() == (repo / shared).resolve()
        assert len(_worktrees(repo)) == 2
        raise RuntimeError("boom")
    assert not wt.exists()
    assert len(_worktrees(repo)) == 1


def test_base_worktree_unknown_ref(repo):
    with (
        pytest.raises(pr_diff.PrDiffError, match="base ref 'nope' not found"),
        pr_diff.base_worktree(repo, "nope", pr_diff.run_process),
    ):
        pass
    assert len(_worktrees(repo)) == 1


class FakeCdk:
    """Delegates git to the real runner; `cdk synth` writes a fixture assembly, `cdk diff` returns text."""

    def __init__(
        self, repo: Path, head: dict[str, Any], base: dict[str, Any] | None, fail_base: bool = False
    ):
        self.repo, self.head, self.base, self.fail_base = repo, head, base, fail_base
        self.calls: list[tuple[str, Path]] = []

    def __call__(self, command, cwd):
        if command[0] == "git":
            return pr_diff.run_process(command, cwd)
        verb = command[1]
        self.calls.append((verb, cwd))
        if verb == "synth":
            out = Path(command[command.index("--output") + 1])
            if cwd == self.repo:
                _assembly(out, {STACK: self.head})
            else:
                assert (cwd / ".venv").is_symlink(), "the base synth must borrow the head's .venv"
                if self.fail_base:
                    raise pr_diff.PrDiffError("`cdk synth` failed: ModuleNotFoundError: stacks.alarms")
                _assembly(
                    out,
                    {STACK: self.base} if self.base else {},
                    json.loads((FIXTURES / "stack-policy.json").read_text()),
                )
            return ""
        if verb == "diff":
            assert "--template" in command and "--app" in command
            return f"Stack {command[4]}\n\x1b[31m[-] AWS::ApiGateway::RestApi ApiF70053CD destroy\x1b[0m\n"
        raise AssertionError(command)


def test_offline_run_writes_one_report_per_stack_and_removes_the_worktree(repo, tmp_path):
    fake = FakeCdk(repo, head=load("api_replaced"), base=load("base"))
    options = pr_diff.Options(base="main", stacks=(), out_dir=tmp_path / "diff", repo=repo)
    (report,) = pr_diff.run_offline(options, fake)
    text = report.read_text()
    assert report == tmp_path / "diff" / f"{STACK}.md"
    assert diff_render.BLOCKED in text  # the base's stack policy was applied
    assert "Compared with: a synth of `main`" in text
    assert "[-] AWS::ApiGateway::RestApi ApiF70053CD destroy" in text and "\x1b[" not in text
    assert json.loads((tmp_path / "diff" / "base" / f"{STACK}.template.json").read_text()) == load("base")
    assert [verb for verb, _ in fake.calls] == ["synth", "synth", "diff"]
    assert fake.calls[0][1] == repo and fake.calls[1][1] != repo
    assert not fake.calls[1][1].exists() and len(_worktrees(repo)) == 1


def test_offline_report_carries_the_extra_sections(repo, tmp_path, monkeypatch):
    seen = []

    def sections(options, head, comparison):
        seen.append(comparison.stack)
        return [f"#### Migrations this deploy applies\n\n- none for {comparison.stack}"]

    monkeypatch.setattr(pr_diff, "extra_sections", sections)
    fake = FakeCdk(repo, head=load("backend_source"), base=load("base"))
    options = pr_diff.Options(base="main", out_dir=tmp_path / "diff", repo=repo)
    (report,) = pr_diff.run_offline(options, fake)
    assert seen == [STACK]
    assert f"#### Migrations this deploy applies\n\n- none for {STACK}" in report.read_text()


def test_offline_stack_missing_at_base_is_all_new(repo, tmp_path):
    fake = FakeCdk(repo, head=load("base"), base=None)
    options = pr_diff.Options(base="main", out_dir=tmp_path / "diff", repo=repo)
    (report,) = pr_diff.run_offline(options, fake)
    text = report.read_text()
    assert f"`{STACK}` does not exist at main: everything is new." in text
    assert "checked against the head's stack policy" not in text


def test_offline_base_synth_failure_is_reported_and_cleaned_up(repo, tmp_path):
    fake = FakeCdk(repo, head=load("base"), base=load("base"), fail_base=True)
    options = pr_diff.Options(base="main", out_dir=tmp_path / "diff", repo=repo)
    with pytest.raises(pr_diff.PrDiffError, match=r"synthesizing the base ref 'main' .* stacks\.alarms"):
        pr_diff.run_offline(options, fake)
    assert len(_worktrees(repo)) == 1


def test_default_base_prefers_origin_main_then_main(repo):
    assert pr_diff.default_base(repo, pr_diff.run_process) == "main"
    _git(repo, "update-ref", "refs/remotes/origin/main", "HEAD")
    assert pr_diff.default_base(repo, pr_diff.run_process) == "origin/main"


# ---------------------------------------------------------------------------------------------------------
# scripts/pr_diff/cli.py: deployed mode, CloudFormation faked with botocore's Stubber (no AWS)


@pytest.fixture
def cloudformation():
    import boto3
    from botocore.stub import Stubber

    client = boto3.client(
        "cloudformation",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_fetch_deployed_template_and_policy(cloudformation, base, policy):
    client, stubber = cloudformation
    stubber.add_response(
        "get_template", {"TemplateBody": json.dumps(base)}, {"StackName": STACK, "TemplateStage": "Original"}
    )
    stubber.add_response("get_stack_policy", {"StackPolicyBody": json.dumps(policy)}, {"StackName": STACK})
    assert pr_diff.fetch_deployed(client, STACK) == (base, policy)


def test_fetch_deployed_missing_stack(cloudformation):
    client, stubber = cloudformation
    stubber.add_client_error(
        "get_template",
        service_error_code="ValidationError",
        service_message=f"Stack with id {STACK} does not exist",
    )
    assert pr_diff.fetch_deployed(client, STACK) == (None, None)


def test_fetch_deployed_other_errors_name_the_call(cloudformation):
    client, stubber = cloudformation
    stubber.add_client_error("get_template", service_error_code="AccessDenied", service_message="not allowed")
    with pytest.raises(pr_diff.PrDiffError, match=f"GetTemplate {STACK}: .*not allowed"):
        pr_diff.fetch_deployed(client, STACK)


def test_deployed_run_compares_with_the_deployed_template(cloudformation, repo, tmp_path):
    client, stubber = cloudformation
    stubber.add_response("get_template", {"TemplateBody": json.dumps(load("base"))})
    stubber.add_response("get_stack_policy", {})
    fake = FakeCdk(repo, head=load("backend_source"), base=None)
    options = pr_diff.Options(out_dir=tmp_path / "diff", repo=repo)
    (report,) = pr_diff.run_deployed(options, fake, client)
    text = report.read_text()
    assert "Compared with: the deployed stack" in text
    assert "The deployed stack has no stack policy" in text
    assert text.count("a canary deployment will run") == 3


NESTED = "credmatebackendprodFunctionGroup1D820D639.nested.template.json"
QUEUE = {"Type": "AWS::SQS::Queue", "Properties": {"VisibilityTimeout": 360}}


class FakeCdkWithGroups(FakeCdk):
    """As FakeCdk, plus a nested function group: the base's has a queue (protected by the group's own stack
    policy), the head's has lost it."""

    def __call__(self, command, cwd):
        out = super().__call__(command, cwd)
        if command[0] != "git" and command[1] == "synth":
            folder = Path(command[command.index("--output") + 1])
            head = cwd == self.repo
            resources = {} if head else {"Fn042QueueA1B2C3D4": QUEUE}
            (folder / NESTED).write_text(json.dumps({"Resources": resources}))
            if not head:
                policy = {
                    "Statement": [
                        {"Effect": "Allow", "Action": "Update:*", "Principal": "*", "Resource": "*"},
                        {
                            "Effect": "Deny",
                            "Action": ["Update:Replace", "Update:Delete"],
                            "Principal": "*",
                            "Resource": ["LogicalResourceId/Fn042QueueA1B2C3D4"],
                        },
                    ]
                }
                (folder / f"{STACK}.FunctionGroup1.stack-policy.json").write_text(json.dumps(policy))
        return out


def test_offline_run_reports_each_nested_function_group_with_its_own_stack_policy(repo, tmp_path):
    # GIVEN a change that deletes a protected queue inside a nested function group
    fake = FakeCdkWithGroups(repo, head=load("base"), base=load("base"))
    options = pr_diff.Options(base="main", stacks=(), out_dir=tmp_path / "diff", repo=repo)
    # WHEN the PR diff runs offline
    reports = pr_diff.run_offline(options, fake)
    # THEN the group gets a report of its own, beside the main stack's, and its policy blocks the delete
    assert [r.name for r in reports] == [f"{STACK}.md", f"{STACK}.FunctionGroup1.md"]
    text = reports[1].read_text()
    assert "Fn042QueueA1B2C3D4" in text and diff_render.BLOCKED in text
    assert f"nested stack of {STACK}" in text
    assert pr_diff.nested_templates(tmp_path / "nothing", STACK) == {}


def test_a_group_gone_from_the_head_is_reported_as_deleting_its_functions(repo, tmp_path):
    class HeadWithoutGroup(FakeCdkWithGroups):
        def __call__(self, command, cwd):
            out = super().__call__(command, cwd)
            if command[0] != "git" and command[1] == "synth" and cwd == self.repo:
                (Path(command[command.index("--output") + 1]) / NESTED).unlink()
            return out

    options = pr_diff.Options(base="main", stacks=(), out_dir=tmp_path / "diff", repo=repo)
    reports = pr_diff.run_offline(options, HeadWithoutGroup(repo, head=load("base"), base=load("base")))
    text = reports[1].read_text()
    assert "`FunctionGroup1` is gone" in text and diff_render.BLOCKED in text
