"""scripts/checkov_gate/gate.py and checkov_skip: unexplained findings fail, reasoned skips pass.

The first two tests gate the real, pinned checkov's findings (requirements-checkov.txt, through `uv tool run`:
the first run on a machine installs it from PyPI, about 10 s); the others use a stand-in checkov command.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from scripts.checkov_gate import gate as checkov_gate

SQS_ENCRYPTION = "CKV_AWS_27"


def _queues_template(*, skipped: bool, failing: bool) -> dict[str, Any]:
    """Unencrypted queues in a small CDK stack; the skipped one through checkov_skip."""
    import aws_cdk as cdk
    from aws_cdk import aws_sqs as sqs
    from aws_cdk.assertions import Template

    from stacks.constructs.nag import checkov_skip

    stack = cdk.Stack(cdk.App(), "gate")
    if failing:
        sqs.CfnQueue(stack, "PlainQueue")
    if skipped:
        queue = sqs.CfnQueue(stack, "EventsQueue")
        checkov_skip(queue, SQS_ENCRYPTION, "EventBridge delivers here and cannot use a customer key")
    return dict(Template.from_stack(stack).to_json())


def _write(directory: Path, name: str, template: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.template.json"
    path.write_text(json.dumps(template))
    return path


# Replays the real checkov's report of the module's shared run for the templates named with -f, as checkov
# would have reported them alone: their failed checks only (the gate runs checkov --quiet, which reports
# nothing else), exit 1 when one failed. argv[1]: the templates that run scanned and its report.
REPLAY = """
import json, os, sys
recorded = json.loads(open(sys.argv[1]).read())
args = sys.argv[2:]
files = {os.path.realpath(args[i + 1]) for i, a in enumerate(args) if a == "-f"}
scanned = {os.path.realpath(t) for t in recorded["templates"]}
if not files or not files <= scanned:
    sys.exit(f"replay: {sorted(files - scanned)} not scanned by the real checkov run")
reports = recorded["reports"]
for r in reports:
    failed = r["results"].get("failed_checks") or []
    r["results"] = {"failed_checks": [c for c in failed if os.path.realpath(c["file_abs_path"]) in files]}
print(json.dumps(reports))
sys.exit(1 if any(r["results"]["failed_checks"] for r in reports) else 0)
"""


@pytest.fixture(scope="module")
def real_checkov(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The real, pinned checkov run once over both tests' templates, each in its own folder; each test's
    gate run replays that report for its own templates. Starting checkov is most of a run (about 5 s of
    CPU): one start instead of two."""
    base = tmp_path_factory.mktemp("real-checkov")
    failing = _write(base / "failing", "app", _queues_template(skipped=True, failing=True))
    clean = _write(base / "clean", "app", _queues_template(skipped=True, failing=False))
    reports = checkov_gate.run_checkov(checkov_gate.checkov_command(None), [failing, clean])
    recorded = base / "report.json"
    recorded.write_text(json.dumps({"templates": [str(failing), str(clean)], "reports": reports}))
    replay = base / "replay.py"
    replay.write_text(REPLAY)
    return {
        "failing": failing.parent,
        "clean": clean.parent,
        "checkov": f"{sys.executable} {replay} {recorded}",
    }


def test_real_checkov_fails_on_an_unskipped_finding_and_names_it(
    real_checkov: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--dir", str(real_checkov["failing"]), "--summary", "--checkov", real_checkov["checkov"]]
    assert checkov_gate.main(argv) == 1
    out = capsys.readouterr().out
    failed = [line for line in out.splitlines() if line.startswith("FAILED ")]
    assert failed == [
        f"FAILED {SQS_ENCRYPTION} PlainQueue (app.template.json): "
        "Ensure all data stored in the SQS queue is encrypted"
    ]
    assert "EventsQueue" not in out
    assert f"{SQS_ENCRYPTION}: 1" in out


def test_real_checkov_passes_a_skip_with_its_reason(
    real_checkov: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--dir", str(real_checkov["clean"]), "--checkov", real_checkov["checkov"]]
    assert checkov_gate.main(argv) == 0
    assert "no unexplained findings in app.template.json" in capsys.readouterr().out


def _fake_checkov(tmp_path: Path, report: object, exit_code: int = 0) -> str:
    script = tmp_path / "fake_checkov.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, sys
            print(json.dumps({report!r}))
            sys.exit({exit_code})
            """
        )
    )
    return f"{sys.executable} {script}"


def test_a_skip_without_a_comment_fails_even_when_checkov_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template = {
        "Resources": {
            "NoComment": {
                "Type": "AWS::SQS::Queue",
                "Metadata": {"checkov": {"skip": [{"id": SQS_ENCRYPTION}]}},
            },
            "BlankComment": {
                "Type": "AWS::SQS::Queue",
                "Metadata": {"checkov": {"skip": [{"id": "CKV_AWS_999", "comment": "  "}]}},
            },
            "Reasoned": {
                "Type": "AWS::SQS::Queue",
                "Metadata": {
                    "checkov": {"skip": [{"id": SQS_ENCRYPTION, "comment": "events only, no records"}]}
                },
            },
        }
    }
    templates = tmp_path / "out"
    _write(templates, "stack", template)
    clean = {"check_type": "cloudformation", "results": {"failed_checks": []}, "summary": {}}
    assert checkov_gate.main(["--dir", str(templates), "--checkov", _fake_checkov(tmp_path, clean)]) == 1
    out = capsys.readouterr().out
    assert f"UNEXPLAINED SKIP {SQS_ENCRYPTION} NoComment (stack.template.json)" in out
    assert "UNEXPLAINED SKIP CKV_AWS_999 BlankComment (stack.template.json)" in out
    assert "Reasoned" not in out


def test_list_reports_and_files_elsewhere_are_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    templates = tmp_path / "out"
    _write(templates, "a", {"Resources": {}})
    report = [
        {
            "check_type": "cloudformation",
            "results": {
                "failed_checks": [
                    {
                        "check_id": "CKV_AWS_117",
                        "check_name": "Ensure that AWS Lambda function is configured inside a VPC",
                        "resource": "AWS::Lambda::Function.Fn",
                        "file_abs_path": str(templates / "a.template.json"),
                    }
                ]
            },
        }
    ]
    assert checkov_gate.main(["--dir", str(templates), "--checkov", _fake_checkov(tmp_path, report, 1)]) == 1
    assert "FAILED CKV_AWS_117 Fn (a.template.json)" in capsys.readouterr().out


@pytest.mark.parametrize(("stdout", "code"), [("{}", 3), ("not json", 0)])
def test_checkov_crash_or_garbage_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stdout: str, code: int
) -> None:
    templates = tmp_path / "out"
    _write(templates, "a", {"Resources": {}})
    fake = tmp_path / "fake.py"
    fake.write_text(f"import sys\nprint({stdout!r})\nsys.exit({code})\n")
    assert checkov_gate.main(["--dir", str(templates), "--checkov", f"{sys.executable} {fake}"]) == 2
    assert "checkov" in capsys.readouterr().err


def test_no_templates_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert checkov_gate.main(["--dir", str(tmp_path)]) == 2
    assert "no *.template.json" in capsys.readouterr().err


def test_checkov_skip_writes_the_reasoned_metadata_and_refuses_bad_input() -> None:
    import aws_cdk as cdk
    from aws_cdk import aws_sqs as sqs
    from aws_cdk.assertions import Template

    from stacks.constructs.nag import checkov_skip

    stack = cdk.Stack(cdk.App(), "s")
    queue = sqs.Queue(stack, "Queue")  # an L2: the skip lands on its CloudFormation resource
    checkov_skip(queue, "CKV_AWS_27", "EventBridge delivers here and cannot use a customer key")
    checkov_skip(queue, "CKV2_AWS_73", "kept as SQS managed for the same EventBridge reason")
    (queue_json,) = Template.from_stack(stack).find_resources("AWS::SQS::Queue").values()
    assert queue_json["Metadata"]["checkov"] == {
        "skip": [
            {"id": "CKV_AWS_27", "comment": "EventBridge delivers here and cannot use a customer key"},
            {"id": "CKV2_AWS_73", "comment": "kept as SQS managed for the same EventBridge reason"},
        ]
    }
    with pytest.raises(ValueError, match=r"CKV_AWS_27 is already skipped"):
        checkov_skip(queue, "CKV_AWS_27", "a second reason for the same check")
    with pytest.raises(ValueError, match=r"'AWS-27' is not a checkov check ID"):
        checkov_skip(queue, "AWS-27", "a reason that is long enough")
    with pytest.raises(ValueError, match=r"at least 4 words.*'n/a'"):
        checkov_skip(queue, "CKV_AWS_115", "n/a")
    with pytest.raises(TypeError, match=r"has no CloudFormation resource"):
        checkov_skip(cdk.Stack(cdk.App(), "empty"), "CKV_AWS_115", "a reason that is long enough")
