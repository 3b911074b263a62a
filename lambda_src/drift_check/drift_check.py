"""Scheduled check that what runs is what `cdk deploy` deployed (construct: guardrails.CodeDriftCheck).

Why CodeSha256 and not only CloudFormation drift detection: drift detection compares resource *properties*
with the template, and a Lambda function's code is an S3 pointer in the template. After
`aws lambda update-function-code` the function still "matches" its template, so drift detection reports
IN_SYNC while different code runs. Lambda's CodeSha256 (base64 SHA-256 of the deployment package) does see it.

What "deployed" means: the version resource the stack created (`current_version`, passed in as its ARN by
the construct). A published version is immutable, so its CodeSha256 is exactly the code CloudFormation
deployed; no hash is computed at synth (the CDK CLI builds the zip later, so it is unknown then).
For each function the check compares:

* `$LATEST` CodeSha256 with that version's: catches `update-function-code` (including hotswap, sam sync);
* the `live` alias's version with that version, and the alias version's CodeSha256: catches
  `update-alias`/`publish-version` done by hand, and a CodeDeploy deployment not started by CloudFormation;
* any traffic weight on another version outside a deployment.

It then runs CloudFormation drift detection on the stack for configuration changes (environment, memory,
role, queue settings...). While the stack itself is updating (a deployment, a canary in progress), the
comparisons would report the deployment as drift, so the run is skipped and says so.

Results: one JSON log line per function and for the stack; metrics in CredentialMate/Guardrails
(CodeDrift per Function and per Stack, StackDrift per Stack, CheckSkipped) that the construct's alarms send
to on-call.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

NAMESPACE_DEFAULT = "CredentialMate/Guardrails"
DRIFT_FILTERS = ["MODIFIED", "DELETED"]
POLL_SECONDS = 5.0


class DriftCheckConfigError(ValueError):
    """The function's environment is not what the CodeDriftCheck construct sets: fix the construct."""


@dataclass(frozen=True)
class Target:
    label: str
    function_name: str
    alias: str
    expected_version_arn: str

    @property
    def expected_version(self) -> str:
        return version_of(self.expected_version_arn)


@dataclass(frozen=True)
class Config:
    stack_name: str
    namespace: str
    targets: tuple[Target, ...]
    drift_timeout_seconds: float


@dataclass(frozen=True)
class CodeDriftResult:
    label: str
    function_name: str
    expected_version: str
    expected_sha256: str
    latest_sha256: str
    alias_version: str
    alias_sha256: str
    extra_weights: Mapping[str, float] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()

    @property
    def drifted(self) -> bool:
        return bool(self.reasons)


@dataclass(frozen=True)
class StackDriftResult:
    stack_name: str
    status: str  # DRIFTED | IN_SYNC | UNKNOWN | NOT_CHECKED | TIMED_OUT | DETECTION_FAILED
    drifted_resources: tuple[str, ...] = ()
    detail: str = ""

    @property
    def drifted(self) -> bool:
        return self.status == "DRIFTED"


# ---------------------------------------------------------------------------------------------------------
# Pure functions


def version_of(version_arn: str) -> str:
    """`arn:aws:lambda:r:a:function:name:7` -> "7". Anything else is a construct bug, said plainly."""
    parts = version_arn.split(":")
    if len(parts) != 8 or parts[5] != "function" or not parts[7].isdigit():
        raise DriftCheckConfigError(
            f"DRIFT_TARGETS: expected_version_arn {version_arn!r} is not a published version's ARN "
            "(arn:...:function:NAME:NUMBER); CodeDriftCheck must pass alias.version.function_arn"
        )
    return parts[7]


def parse_config(env: Mapping[str, str]) -> Config:
    def need(key: str) -> str:
        value = env.get(key, "").strip()
        if not value:
            raise DriftCheckConfigError(f"environment variable {key} is missing; set by CodeDriftCheck")
        return value

    try:
        raw = json.loads(need("DRIFT_TARGETS"))
    except json.JSONDecodeError as err:
        raise DriftCheckConfigError(f"environment variable DRIFT_TARGETS is not JSON: {err}") from err
    if not isinstance(raw, list) or not raw:
        raise DriftCheckConfigError("environment variable DRIFT_TARGETS must be a non-empty JSON list")
    targets = []
    for i, item in enumerate(raw):
        keys = ("label", "function_name", "alias", "expected_version_arn")
        if not isinstance(item, dict) or any(not isinstance(item.get(k), str) or not item[k] for k in keys):
            raise DriftCheckConfigError(
                f"DRIFT_TARGETS[{i}] must be an object with string keys {keys}: {item!r}"
            )
        target = Target(**{k: item[k] for k in keys})
        target.expected_version  # noqa: B018 - validates the ARN now, not halfway through a run
        targets.append(target)
    try:
        timeout = float(env.get("DRIFT_TIMEOUT_SECONDS", "240"))
    except ValueError as err:
        raise DriftCheckConfigError("environment variable DRIFT_TIMEOUT_SECONDS must be a number") from err
    return Config(
        stack_name=need("STACK_NAME"),
        namespace=env.get("METRIC_NAMESPACE") or NAMESPACE_DEFAULT,
        targets=tuple(targets),
        drift_timeout_seconds=timeout,
    )


def compare(
    target: Target,
    *,
    expected_sha256: str,
    latest_sha256: str,
    alias_version: str,
    alias_sha256: str,
    extra_weights: Mapping[str, float],
) -> CodeDriftResult:
    reasons = []
    if latest_sha256 != expected_sha256:
        reasons.append(
            f"$LATEST code {latest_sha256} differs from deployed version {target.expected_version} "
            f"({expected_sha256}): code was changed outside CloudFormation"
        )
    if alias_version != target.expected_version:
        reasons.append(
            f"alias {target.alias} points to version {alias_version}, the stack deployed version "
            f"{target.expected_version}"
        )
    if alias_sha256 != expected_sha256:
        reasons.append(f"alias {target.alias} runs code {alias_sha256}, the stack deployed {expected_sha256}")
    for version, weight in sorted(extra_weights.items()):
        reasons.append(
            f"alias {target.alias} sends {weight:.0%} of traffic to version {version} outside a deployment"
        )
    return CodeDriftResult(
        label=target.label,
        function_name=target.function_name,
        expected_version=target.expected_version,
        expected_sha256=expected_sha256,
        latest_sha256=latest_sha256,
        alias_version=alias_version,
        alias_sha256=alias_sha256,
        extra_weights=dict(extra_weights),
        reasons=tuple(reasons),
    )


def metric_data(
    stack_name: str, code: Sequence[CodeDriftResult], stack: StackDriftResult | None, skipped: bool
) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = [
        {
            "MetricName": "CodeDrift",
            "Dimensions": [{"Name": "Function", "Value": r.label}],
            "Value": 1.0 if r.drifted else 0.0,
            "Unit": "Count",
        }
        for r in code
    ]
    if code:
        # One per stack as well: the alarm on-call gets (one per stack, not per function, which would cost
        # a resource per function); the per-function metric and the log line say which one drifted.
        data.append(
            {
                "MetricName": "CodeDrift",
                "Dimensions": [{"Name": "Stack", "Value": stack_name}],
                "Value": 1.0 if any(r.drifted for r in code) else 0.0,
                "Unit": "Count",
            }
        )
    if stack is not None:
        data.append(
            {
                "MetricName": "StackDrift",
                "Dimensions": [{"Name": "Stack", "Value": stack_name}],
                "Value": 1.0 if stack.drifted else 0.0,
                "Unit": "Count",
            }
        )
    data.append(
        {
            "MetricName": "CheckSkipped",
            "Dimensions": [{"Name": "Stack", "Value": stack_name}],
            "Value": 1.0 if skipped else 0.0,
            "Unit": "Count",
        }
    )
    return data


def log(record: Mapping[str, Any]) -> None:
    print(json.dumps(record, sort_keys=True, default=str), flush=True)


# ---------------------------------------------------------------------------------------------------------
# AWS calls (clients are passed in: botocore Stubber in tests)


def stack_is_updating(cfn: Any, stack_name: str) -> str | None:
    status: str = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]["StackStatus"]
    return status if status.endswith("_IN_PROGRESS") else None


def check_function(lam: Any, target: Target) -> CodeDriftResult:
    def sha(qualifier: str) -> str:
        config = lam.get_function_configuration(FunctionName=target.function_name, Qualifier=qualifier)
        return str(config["CodeSha256"])

    expected = sha(target.expected_version)
    latest = sha("$LATEST")
    alias = lam.get_alias(FunctionName=target.function_name, Name=target.alias)
    alias_version = str(alias["FunctionVersion"])
    # Another version behind the alias: read through the alias itself (its configuration is that version's),
    # the alias ARN being what the check's role may read, not every version of the function.
    alias_sha = expected if alias_version == target.expected_version else sha(target.alias)
    weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
    return compare(
        target,
        expected_sha256=expected,
        latest_sha256=latest,
        alias_version=alias_version,
        alias_sha256=alias_sha,
        extra_weights={str(k): float(v) for k, v in weights.items()},
    )


def detect_stack_drift(
    cfn: Any,
    stack_name: str,
    *,
    timeout_seconds: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> StackDriftResult:
    detection_id = cfn.detect_stack_drift(StackName=stack_name)["StackDriftDetectionId"]
    deadline = clock() + timeout_seconds
    while True:
        status = cfn.describe_stack_drift_detection_status(StackDriftDetectionId=detection_id)
        if status["DetectionStatus"] != "DETECTION_IN_PROGRESS":
            break
        if clock() >= deadline:
            return StackDriftResult(stack_name, "TIMED_OUT", detail=f"detection {detection_id} still running")
        sleep(POLL_SECONDS)
    drift_status = str(status.get("StackDriftStatus", "UNKNOWN"))
    detail = str(status.get("DetectionStatusReason", ""))
    if status["DetectionStatus"] == "DETECTION_FAILED" and drift_status != "DRIFTED":
        # Typically one resource type could not be read; the rest was checked. Not drift, but visible.
        return StackDriftResult(stack_name, "DETECTION_FAILED", detail=detail)
    drifted: list[str] = []
    if drift_status == "DRIFTED":
        # No paginator exists for this operation: follow NextToken by hand.
        kwargs: dict[str, Any] = {"StackName": stack_name, "StackResourceDriftStatusFilters": DRIFT_FILTERS}
        while True:
            page = cfn.describe_stack_resource_drifts(**kwargs)
            drifted += [
                f"{d['LogicalResourceId']} ({d['ResourceType']}, {d['StackResourceDriftStatus']})"
                for d in page["StackResourceDrifts"]
            ]
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
    return StackDriftResult(stack_name, drift_status, drifted_resources=tuple(drifted), detail=detail)


def run(
    config: Config,
    *,
    lam: Any,
    cfn: Any,
    cloudwatch: Any,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    updating = stack_is_updating(cfn, config.stack_name)
    if updating:
        log({"check": "skipped", "stack": config.stack_name, "reason": f"stack is {updating}"})
        cloudwatch.put_metric_data(
            Namespace=config.namespace, MetricData=metric_data(config.stack_name, [], None, skipped=True)
        )
        return {"skipped": True, "stack_status": updating}
    code = [check_function(lam, t) for t in config.targets]
    for result in code:
        log({"check": "code", **asdict(result), "drifted": result.drifted})
    stack = detect_stack_drift(
        cfn, config.stack_name, timeout_seconds=config.drift_timeout_seconds, clock=clock, sleep=sleep
    )
    log({"check": "stack", **asdict(stack), "drifted": stack.drifted})
    cloudwatch.put_metric_data(
        Namespace=config.namespace, MetricData=metric_data(config.stack_name, code, stack, skipped=False)
    )
    return {
        "skipped": False,
        "code_drift": sorted(r.label for r in code if r.drifted),
        "stack_drift": stack.status,
        "drifted_resources": list(stack.drifted_resources),
    }


def handler(event: Mapping[str, Any], context: object) -> dict[str, Any]:
    import boto3
    from botocore.config import Config as BotoConfig

    config = parse_config(os.environ)
    boto = BotoConfig(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=20)
    return run(
        config,
        lam=boto3.client("lambda", config=boto),
        cfn=boto3.client("cloudformation", config=boto),
        cloudwatch=boto3.client("cloudwatch", config=boto),
    )
