# mypy: allow-untyped-defs, allow-incomplete-defs
# (pyproject relaxes tests.* like this, but mypy names these files without the tests. prefix)
"""The drift-check Lambda (lambda_src/drift_check) against botocore Stubber fakes: no network, no AWS account.

Each test queues the exact AWS calls it expects; Stubber fails on any call not queued or made with other
parameters, so "checks this version", "skips while deploying" and "publishes these metrics" are enforced.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lambda_src" / "drift_check"))
import drift_check as dc

STACK = "credmate-backend-prod"
FN = "credmate-backend-prod-BackendApiFunction-ABC123"
V7 = f"arn:aws:lambda:us-east-1:123456789012:function:{FN}:7"
SHA_DEPLOYED = "deployedsha256="
SHA_OTHER = "handpatchedsha256="
TARGET = dc.Target(label="BackendApi", function_name=FN, alias="live", expected_version_arn=V7)
ENV = {
    "STACK_NAME": STACK,
    "METRIC_NAMESPACE": "CredentialMate/Guardrails",
    "DRIFT_TARGETS": json.dumps(
        [{"label": "BackendApi", "function_name": FN, "alias": "live", "expected_version_arn": V7}]
    ),
}


def client(service: str) -> Any:
    return boto3.client(
        service, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )


class Fakes:
    def __init__(self) -> None:
        self.lam, self.cfn, self.cw = client("lambda"), client("cloudformation"), client("cloudwatch")
        self.stubs = {"lambda": Stubber(self.lam), "cfn": Stubber(self.cfn), "cw": Stubber(self.cw)}

    def config(self, qualifier: str, sha: str) -> None:
        self.stubs["lambda"].add_response(
            "get_function_configuration", {"CodeSha256": sha}, {"FunctionName": FN, "Qualifier": qualifier}
        )

    def alias(self, version: str, weights: dict[str, float] | None = None) -> None:
        response: dict[str, Any] = {"FunctionVersion": version, "Name": "live"}
        if weights:
            response["RoutingConfig"] = {"AdditionalVersionWeights": weights}
        self.stubs["lambda"].add_response("get_alias", response, {"FunctionName": FN, "Name": "live"})

    def stack_status(self, status: str) -> None:
        self.stubs["cfn"].add_response(
            "describe_stacks",
            {"Stacks": [{"StackName": STACK, "StackStatus": status, "CreationTime": "2026-01-01T00:00:00Z"}]},
            {"StackName": STACK},
        )

    def drift(self, *statuses: tuple[str, str], drifts: list[dict[str, Any]] | None = None) -> None:
        self.stubs["cfn"].add_response(
            "detect_stack_drift", {"StackDriftDetectionId": "det-1"}, {"StackName": STACK}
        )
        for detection, drift_status in statuses:
            response = {
                "StackId": "id",
                "StackDriftDetectionId": "det-1",
                "DetectionStatus": detection,
                "Timestamp": "2026-01-01T00:00:00Z",
            }
            if drift_status:
                response["StackDriftStatus"] = drift_status
            self.stubs["cfn"].add_response(
                "describe_stack_drift_detection_status", response, {"StackDriftDetectionId": "det-1"}
            )
        if drifts is not None:
            self.stubs["cfn"].add_response(
                "describe_stack_resource_drifts",
                {"StackResourceDrifts": drifts},
                {"StackName": STACK, "StackResourceDriftStatusFilters": ["MODIFIED", "DELETED"]},
            )

    def metrics(self, expected: list[dict[str, Any]]) -> None:
        self.stubs["cw"].add_response(
            "put_metric_data", {}, {"Namespace": "CredentialMate/Guardrails", "MetricData": expected}
        )

    def run(self) -> dict[str, Any]:
        config = dc.parse_config(ENV)
        return dc.run(
            config, lam=self.lam, cfn=self.cfn, cloudwatch=self.cw, clock=FakeClock(), sleep=lambda s: None
        )


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 5.0
        return self.now


@pytest.fixture
def aws() -> Iterator[Fakes]:
    fakes = Fakes()
    for stub in fakes.stubs.values():
        stub.activate()
    yield fakes
    for stub in fakes.stubs.values():
        stub.assert_no_pending_responses()
        stub.deactivate()


def code_metric(value: float) -> dict[str, Any]:
    return {
        "MetricName": "CodeDrift",
        "Dimensions": [{"Name": "Function", "Value": "BackendApi"}],
        "Value": value,
        "Unit": "Count",
    }


def stack_metric(name: str, value: float) -> dict[str, Any]:
    return {
        "MetricName": name,
        "Dimensions": [{"Name": "Stack", "Value": STACK}],
        "Value": value,
        "Unit": "Count",
    }


# ---------------------------------------------------------------------------------------------------------
# Pure functions


def test_compare_reports_nothing_when_latest_alias_and_version_agree():
    result = dc.compare(
        TARGET, expected_sha256="a", latest_sha256="a", alias_version="7", alias_sha256="a", extra_weights={}
    )
    assert not result.drifted and result.reasons == ()


def test_compare_names_each_kind_of_drift():
    result = dc.compare(
        TARGET,
        expected_sha256="a",
        latest_sha256="b",
        alias_version="8",
        alias_sha256="b",
        extra_weights={"9": 0.1},
    )
    assert result.drifted
    text = " | ".join(result.reasons)
    assert "$LATEST code b differs from deployed version 7" in text
    assert "points to version 8, the stack deployed version 7" in text
    assert "alias live runs code b" in text
    assert "10% of traffic to version 9" in text


@pytest.mark.parametrize(
    "arn",
    ["arn:aws:lambda:us-east-1:1:function:f", "arn:aws:lambda:us-east-1:1:function:f:live", "not-an-arn"],
)
def test_version_of_rejects_anything_but_a_version_arn(arn):
    with pytest.raises(dc.DriftCheckConfigError, match="expected_version_arn"):
        dc.version_of(arn)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "DRIFT_TARGETS is missing"),
        ({"DRIFT_TARGETS": "{"}, "not JSON"),
        ({"DRIFT_TARGETS": "[]"}, "non-empty JSON list"),
        ({"DRIFT_TARGETS": '[{"label": "A"}]'}, r"DRIFT_TARGETS\[0\]"),
        ({"DRIFT_TARGETS": ENV["DRIFT_TARGETS"]}, "STACK_NAME is missing"),
        ({**ENV, "DRIFT_TIMEOUT_SECONDS": "soon"}, "DRIFT_TIMEOUT_SECONDS"),
    ],
)
def test_parse_config_names_the_variable_to_fix(env, message):
    with pytest.raises(dc.DriftCheckConfigError, match=message):
        dc.parse_config(env)


def test_parse_config_reads_the_construct_contract():
    config = dc.parse_config(ENV)
    assert config.stack_name == STACK and config.targets == (TARGET,) and config.drift_timeout_seconds == 240


# ---------------------------------------------------------------------------------------------------------
# Against Stubber fakes


def test_in_sync_run_publishes_zero_metrics(aws, capsys):
    aws.stack_status("UPDATE_COMPLETE")
    aws.config("7", SHA_DEPLOYED)
    aws.config("$LATEST", SHA_DEPLOYED)
    aws.alias("7")
    aws.drift(("DETECTION_IN_PROGRESS", ""), ("DETECTION_COMPLETE", "IN_SYNC"))
    aws.metrics(
        [
            code_metric(0.0),
            stack_metric("CodeDrift", 0.0),
            stack_metric("StackDrift", 0.0),
            stack_metric("CheckSkipped", 0.0),
        ]
    )
    assert aws.run() == {
        "skipped": False,
        "code_drift": [],
        "stack_drift": "IN_SYNC",
        "drifted_resources": [],
    }
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["check"], line["drifted"]) for line in lines] == [("code", False), ("stack", False)]


def test_code_swapped_with_update_function_code_is_drift_even_when_cloudformation_sees_none(aws, capsys):
    """The first incident: $LATEST changed by hand. CloudFormation drift detection says IN_SYNC."""
    aws.stack_status("UPDATE_COMPLETE")
    aws.config("7", SHA_DEPLOYED)
    aws.config("$LATEST", SHA_OTHER)
    aws.alias("7")
    aws.drift(("DETECTION_COMPLETE", "IN_SYNC"))
    aws.metrics(
        [
            code_metric(1.0),
            stack_metric("CodeDrift", 1.0),
            stack_metric("StackDrift", 0.0),
            stack_metric("CheckSkipped", 0.0),
        ]
    )
    result = aws.run()
    assert result["code_drift"] == ["BackendApi"] and result["stack_drift"] == "IN_SYNC"
    code_line = json.loads(capsys.readouterr().out.splitlines()[0])
    assert code_line["drifted"] is True and code_line["latest_sha256"] == SHA_OTHER


def test_alias_moved_to_a_hand_published_version_reads_that_versions_code(aws):
    aws.stack_status("UPDATE_COMPLETE")
    aws.config("7", SHA_DEPLOYED)
    aws.config("$LATEST", SHA_DEPLOYED)
    aws.alias("8", weights={"7": 0.5})
    # Only read because the alias is not on the deployed version; through the alias (the role may read
    # the alias, the deployed version and $LATEST, not every version).
    aws.config("live", SHA_OTHER)
    aws.drift(
        ("DETECTION_COMPLETE", "DRIFTED"),
        drifts=[
            {
                "StackId": "id",
                "LogicalResourceId": "BackendApiLiveAlias1234",
                "ResourceType": "AWS::Lambda::Alias",
                "StackResourceDriftStatus": "MODIFIED",
                "Timestamp": "2026-01-01T00:00:00Z",
            }
        ],
    )
    aws.metrics(
        [
            code_metric(1.0),
            stack_metric("CodeDrift", 1.0),
            stack_metric("StackDrift", 1.0),
            stack_metric("CheckSkipped", 0.0),
        ]
    )
    result = aws.run()
    assert result["code_drift"] == ["BackendApi"]
    assert result["drifted_resources"] == ["BackendApiLiveAlias1234 (AWS::Lambda::Alias, MODIFIED)"]


def test_drifted_resources_are_read_across_pages(aws):
    def drift(logical_id: str) -> dict[str, Any]:
        return {
            "StackId": "id",
            "LogicalResourceId": logical_id,
            "ResourceType": "AWS::SQS::Queue",
            "StackResourceDriftStatus": "MODIFIED",
            "Timestamp": "2026-01-01T00:00:00Z",
        }

    aws.stack_status("UPDATE_COMPLETE")
    aws.config("7", SHA_DEPLOYED)
    aws.config("$LATEST", SHA_DEPLOYED)
    aws.alias("7")
    aws.drift(("DETECTION_COMPLETE", "DRIFTED"))
    filters = {"StackName": STACK, "StackResourceDriftStatusFilters": ["MODIFIED", "DELETED"]}
    aws.stubs["cfn"].add_response(
        "describe_stack_resource_drifts",
        {"StackResourceDrifts": [drift("Queue1")], "NextToken": "page2"},
        filters,
    )
    aws.stubs["cfn"].add_response(
        "describe_stack_resource_drifts",
        {"StackResourceDrifts": [drift("Queue2")]},
        {**filters, "NextToken": "page2"},
    )
    aws.metrics(
        [
            code_metric(0.0),
            stack_metric("CodeDrift", 0.0),
            stack_metric("StackDrift", 1.0),
            stack_metric("CheckSkipped", 0.0),
        ]
    )
    assert [r.split(" ")[0] for r in aws.run()["drifted_resources"]] == ["Queue1", "Queue2"]


def test_skips_while_the_stack_is_deploying(aws, capsys):
    """A canary in progress moves the alias legitimately: no comparisons, no drift detection."""
    aws.stack_status("UPDATE_IN_PROGRESS")
    aws.metrics([stack_metric("CheckSkipped", 1.0)])
    assert aws.run() == {"skipped": True, "stack_status": "UPDATE_IN_PROGRESS"}
    assert json.loads(capsys.readouterr().out)["check"] == "skipped"


def test_drift_detection_that_never_finishes_times_out_without_reporting_drift(aws):
    aws.stack_status("UPDATE_COMPLETE")
    aws.config("7", SHA_DEPLOYED)
    aws.config("$LATEST", SHA_DEPLOYED)
    aws.alias("7")
    # FakeClock advances 5 s per reading; ENV's default budget is 240 s: 48 polls then give up.
    aws.drift(*[("DETECTION_IN_PROGRESS", "")] * 48)
    aws.metrics(
        [
            code_metric(0.0),
            stack_metric("CodeDrift", 0.0),
            stack_metric("StackDrift", 0.0),
            stack_metric("CheckSkipped", 0.0),
        ]
    )
    assert aws.run()["stack_drift"] == "TIMED_OUT"


def test_failed_detection_is_reported_but_not_as_drift(aws):
    aws.stack_status("UPDATE_COMPLETE")
    aws.config("7", SHA_DEPLOYED)
    aws.config("$LATEST", SHA_DEPLOYED)
    aws.alias("7")
    aws.drift(("DETECTION_FAILED", "UNKNOWN"))
    aws.metrics(
        [
            code_metric(0.0),
            stack_metric("CodeDrift", 0.0),
            stack_metric("StackDrift", 0.0),
            stack_metric("CheckSkipped", 0.0),
        ]
    )
    assert aws.run()["stack_drift"] == "DETECTION_FAILED"


def test_handler_wires_real_clients_from_the_environment(monkeypatch):
    captured: dict[str, Any] = {}

    def fake_run(config, *, lam, cfn, cloudwatch):
        captured.update(
            config=config, services=[c.meta.service_model.service_name for c in (lam, cfn, cloudwatch)]
        )
        return {"ok": True}

    for key, value in {
        **ENV,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(dc, "run", fake_run)
    assert dc.handler({}, None) == {"ok": True}
    assert captured["config"].targets == (TARGET,)
    assert captured["services"] == ["lambda", "cloudformation", "cloudwatch"]
