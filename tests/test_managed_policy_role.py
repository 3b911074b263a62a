"""ManagedPolicyRole (stacks/constructs/managed_policy_role.py) on small stacks: the grants CDK makes
internally land in one customer-managed policy, functions still wait for it, a kept logical ID is the one
CDK gives the role it replaces, and replaced AWS managed policies stay off."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from aws_cdk.assertions import Template
from constructs import Construct

from stacks.constructs.managed_policy_role import ManagedPolicyRole, logical_id_at, path_below_stack

LAMBDA = iam.ServicePrincipal("lambda.amazonaws.com")


def _fn(scope: Construct, construct_id: str, **kwargs: Any) -> lambda_.Function:
    return lambda_.Function(
        scope,
        construct_id,
        code=lambda_.Code.from_inline("def h(e, c): return 1"),
        handler="index.h",
        runtime=lambda_.Runtime.PYTHON_3_12,
        **kwargs,
    )


def _lid(stack: cdk.Stack, construct: Construct) -> str:
    node = construct if isinstance(construct, cdk.CfnResource) else construct.node.default_child
    assert isinstance(node, cdk.CfnResource)
    return str(stack.resolve(node.logical_id))


@pytest.fixture(scope="module")
def built() -> dict[str, Any]:
    stack = cdk.Stack(cdk.App(), "S")
    holder = Construct(stack, "Worker")
    role = ManagedPolicyRole(
        holder,
        "ServiceRole",
        assumed_by=LAMBDA,
        description="test role",
        policy_description="test policy",
        keep_logical_id=(*path_below_stack(holder), "Function", "ServiceRole", "Resource"),
    )
    key = kms.Key(stack, "Key")
    queue = sqs.Queue(stack, "Queue")
    fn = _fn(holder, "Function", role=role, tracing=lambda_.Tracing.ACTIVE, environment_encryption=key)
    fn.add_event_source(sources.SqsEventSource(queue))  # grants consume rights through the role
    key.grant_decrypt(fn)
    invoker = _fn(
        stack,
        "Invoker",
        role=ManagedPolicyRole(
            stack, "InvokerRole", assumed_by=LAMBDA, description="d", policy_description="p"
        ),
    )
    fn.grant_invoke(invoker)
    unused = ManagedPolicyRole(stack, "Unused", assumed_by=LAMBDA, description="d", policy_description="p")
    return {
        "stack": stack,
        "template": Template.from_stack(stack),
        "role": role,
        "fn": fn,
        "queue": queue,
        "key": key,
        "invoker": invoker,
        "unused": unused,
    }


def _statements_of(b: dict[str, Any], role: ManagedPolicyRole) -> list[dict[str, Any]]:
    assert role.policy is not None
    stack: cdk.Stack = b["stack"]
    policy = b["template"].to_json()["Resources"][_lid(stack, role.policy)]
    assert policy["Type"] == "AWS::IAM::ManagedPolicy"
    assert policy["Properties"]["Roles"] == [{"Ref": _lid(stack, role)}]
    return list(policy["Properties"]["PolicyDocument"]["Statement"])


def _actions(statement: dict[str, Any]) -> list[str]:
    a = statement["Action"]
    return a if isinstance(a, list) else [a]


def test_no_inline_policy_is_created(built: dict[str, Any]) -> None:
    built["template"].resource_count_is("AWS::IAM::Policy", 0)


def test_grants_made_inside_the_library_land_in_the_managed_policy(built: dict[str, Any]) -> None:
    stack = built["stack"]
    statements = _statements_of(built, built["role"])
    by_action = {a: s for s in statements for a in _actions(s)}
    assert by_action["xray:PutTraceSegments"]["Resource"] == "*"  # active tracing
    assert by_action["sqs:ReceiveMessage"]["Resource"] == {"Fn::GetAtt": [_lid(stack, built["queue"]), "Arn"]}
    assert by_action["kms:Decrypt"]["Resource"] == {"Fn::GetAtt": [_lid(stack, built["key"]), "Arn"]}
    invoker = _statements_of(built, built["invoker"].role)
    fn_arn = {"Fn::GetAtt": [_lid(stack, built["fn"]), "Arn"]}
    assert any(_actions(s) == ["lambda:InvokeFunction"] and fn_arn in s["Resource"] for s in invoker), invoker


def test_the_function_waits_for_its_roles_managed_policy(built: dict[str, Any]) -> None:
    stack = built["stack"]
    fn = built["template"].to_json()["Resources"][_lid(stack, built["fn"])]
    assert _lid(stack, built["role"].policy) in fn["DependsOn"]


def test_a_role_without_statements_has_no_policy(built: dict[str, Any]) -> None:
    assert built["unused"].policy is None
    roles = [
        p["Properties"]["Roles"] for p in built["template"].find_resources("AWS::IAM::ManagedPolicy").values()
    ]
    assert {"Ref": _lid(built["stack"], built["unused"])} not in [r for rs in roles for r in rs]


def test_kept_logical_id_is_the_one_cdk_gives_the_role_a_function_builds() -> None:
    plain = cdk.Stack(cdk.App(), "Plain")
    fn = _fn(Construct(plain, "Worker"), "Function")
    built_by_function = _lid(plain, fn.role)  # type: ignore[arg-type]
    assert logical_id_at(("Worker", "Function", "ServiceRole", "Resource")) == built_by_function
    stack = cdk.Stack(cdk.App(), "S")
    role = ManagedPolicyRole(
        Construct(stack, "Worker"),
        "Role",
        assumed_by=LAMBDA,
        description="d",
        policy_description="p",
        keep_logical_id=("Worker", "Function", "ServiceRole", "Resource"),
    )
    assert _lid(stack, role) == built_by_function


def test_replaced_aws_managed_policies_stay_off_and_others_stay_on() -> None:
    stack = cdk.Stack(cdk.App(), "S")
    role = ManagedPolicyRole(
        stack,
        "DeployRole",
        assumed_by=iam.ServicePrincipal("codedeploy.amazonaws.com"),
        description="d",
        policy_description="p",
        replaces_aws_managed=("service-role/AWSCodeDeployRoleForLambdaLimited",),
    )
    fn = _fn(stack, "F")
    codedeploy.LambdaDeploymentGroup(
        stack,
        "Group",
        alias=lambda_.Alias(stack, "Live", alias_name="live", version=fn.current_version),
        role=role,
    )
    arns = stack.resolve(role.node.default_child.managed_policy_arns)  # type: ignore[union-attr]
    assert not arns, arns
    role.add_managed_policy(iam.ManagedPolicy.from_aws_managed_policy_name("ReadOnlyAccess"))
    arns = stack.resolve(role.node.default_child.managed_policy_arns)  # type: ignore[union-attr]
    assert "ReadOnlyAccess" in str(arns)
