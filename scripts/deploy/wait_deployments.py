"""Wait until every CodeDeploy deployment of a stack's deployment groups has finished (CI, after deploy).

Exit 0 when none is in progress and the newest of each group succeeded; 1 when one failed, stopped or the
wait timed out; 2 on bad usage. Needs AWS credentials (untested against AWS; tested with botocore Stubber).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

IN_PROGRESS = ["Created", "Queued", "InProgress", "Baking", "Ready"]


def deployment_groups(cfn: Any, stack: str) -> list[tuple[str, str]]:
    """(application, deployment group) physical names of the stack's Lambda deployment groups."""
    # ListStackResources pages through every resource; DescribeStackResources stops at the first 100, and
    # this stack has more, so it could silently miss deployment groups.
    resources: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = cfn.list_stack_resources(StackName=stack, **({"NextToken": token} if token else {}))
        resources += page["StackResourceSummaries"]
        token = page.get("NextToken")
        if not token:
            break
    apps = [r["PhysicalResourceId"] for r in resources if r["ResourceType"] == "AWS::CodeDeploy::Application"]
    groups = [
        r["PhysicalResourceId"] for r in resources if r["ResourceType"] == "AWS::CodeDeploy::DeploymentGroup"
    ]
    if len(apps) != 1:
        raise SystemExit(f"stack {stack}: expected one CodeDeploy application, found {len(apps)}")
    return [(apps[0], g) for g in groups]


def pending(codedeploy: Any, app: str, group: str) -> list[str]:
    return list(
        codedeploy.list_deployments(
            applicationName=app, deploymentGroupName=group, includeOnlyStatuses=IN_PROGRESS
        )["deployments"]
    )


def latest_status(codedeploy: Any, app: str, group: str) -> str | None:
    info = codedeploy.get_deployment_group(applicationName=app, deploymentGroupName=group)[
        "deploymentGroupInfo"
    ]
    last = info.get("lastAttemptedDeployment")
    return None if last is None else str(last["status"])


def wait(
    cfn: Any,
    codedeploy: Any,
    stack: str,
    *,
    timeout_s: float,
    poll_s: float,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], float] = time.monotonic,
) -> int:
    deadline = now() + timeout_s
    groups = deployment_groups(cfn, stack)
    while True:
        busy = [(a, g, d) for a, g in groups for d in pending(codedeploy, a, g)]
        if not busy:
            break
        if now() >= deadline:
            print(f"timed out: still in progress: {[d for _, _, d in busy]}")
            return 1
        print(f"waiting for {len(busy)} deployment(s): {', '.join(d for _, _, d in busy)}")
        sleep(poll_s)
    failed = [(g, s) for a, g in groups if (s := latest_status(codedeploy, a, g)) not in (None, "Succeeded")]
    for group, status in failed:
        print(f"deployment group {group}: last deployment {status} (see the on-call topic and hook logs)")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stack", required=True)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--poll", type=float, default=20)
    args = parser.parse_args(argv)
    import boto3

    return wait(
        boto3.client("cloudformation"),
        boto3.client("codedeploy"),
        args.stack,
        timeout_s=args.timeout,
        poll_s=args.poll,
    )


if __name__ == "__main__":
    sys.exit(main())
