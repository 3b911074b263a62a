"""scripts/deploy/wait_deployments.py against Stubber fakes of CloudFormation and CodeDeploy."""

from __future__ import annotations

import boto3
from botocore.stub import Stubber

from scripts.deploy import wait_deployments

STACK = "credmate-backend-prod"


def clients() -> tuple[object, Stubber, object, Stubber]:
    cfn = boto3.client(
        "cloudformation", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    cd = boto3.client("codedeploy", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    return cfn, Stubber(cfn), cd, Stubber(cd)


def stack_resources(stub: Stubber) -> None:
    def res(kind: str, pid: str) -> dict[str, object]:
        return {
            "LogicalResourceId": pid,
            "PhysicalResourceId": pid,
            "ResourceType": kind,
            "LastUpdatedTimestamp": "2026-11-22T00:00:00Z",
            "ResourceStatus": "UPDATE_COMPLETE",
        }

    # Two pages, the deployment group on the second: the stack has more than one page of resources.
    stub.add_response(
        "list_stack_resources",
        {"StackResourceSummaries": [res("AWS::CodeDeploy::Application", "app")], "NextToken": "page-2"},
        {"StackName": STACK},
    )
    stub.add_response(
        "list_stack_resources",
        {"StackResourceSummaries": [res("AWS::CodeDeploy::DeploymentGroup", "grp")]},
        {"StackName": STACK, "NextToken": "page-2"},
    )


def group_status(stub: Stubber, status: str) -> None:
    stub.add_response(
        "get_deployment_group",
        {"deploymentGroupInfo": {"lastAttemptedDeployment": {"deploymentId": "d-1", "status": status}}},
        {"applicationName": "app", "deploymentGroupName": "grp"},
    )


def listing(stub: Stubber, ids: list[str]) -> None:
    stub.add_response(
        "list_deployments",
        {"deployments": ids},
        {
            "applicationName": "app",
            "deploymentGroupName": "grp",
            "includeOnlyStatuses": wait_deployments.IN_PROGRESS,
        },
    )


def test_waits_until_done_then_succeeds() -> None:
    cfn, cfn_stub, cd, cd_stub = clients()
    stack_resources(cfn_stub)
    listing(cd_stub, ["d-1"])
    listing(cd_stub, [])
    group_status(cd_stub, "Succeeded")
    sleeps: list[float] = []
    with cfn_stub, cd_stub:
        rc = wait_deployments.wait(cfn, cd, STACK, timeout_s=60, poll_s=5, sleep=sleeps.append, now=lambda: 0)
    assert rc == 0 and sleeps == [5]


def test_failed_rollback_is_exit_1(capsys) -> None:
    cfn, cfn_stub, cd, cd_stub = clients()
    stack_resources(cfn_stub)
    listing(cd_stub, [])
    group_status(cd_stub, "Failed")
    with cfn_stub, cd_stub:
        assert wait_deployments.wait(cfn, cd, STACK, timeout_s=60, poll_s=5) == 1
    assert "grp: last deployment Failed" in capsys.readouterr().out


def test_timeout_is_exit_1() -> None:
    cfn, cfn_stub, cd, cd_stub = clients()
    stack_resources(cfn_stub)
    listing(cd_stub, ["d-1"])
    clock = iter([0.0, 100.0])
    with cfn_stub, cd_stub:
        rc = wait_deployments.wait(
            cfn, cd, STACK, timeout_s=60, poll_s=5, sleep=lambda _s: None, now=lambda: next(clock)
        )
    assert rc == 1
