"""One backend function: its log group, its versions and the `live` alias every event source targets.

The Lambda handler is the probe wrapper (`credmate_probe.handler`), which imports the real handler at init
exactly as production would and answers deploy-time probe events without running business logic; the real
handler is named in `CREDMATE_REAL_HANDLER`. See lambda_src/probe/credmate_probe.py and
stacks/backend_bundle.py (the same variables reach synth-time verification).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.backend_bundle import PROBE_HANDLER
from stacks.constructs.managed_policy_role import ManagedPolicyRole, log_writer_policy, path_below_stack

LIVE_ALIAS = "live"

R = logs.RetentionDays
RETENTION_BY_DAYS = {
    1: R.ONE_DAY,
    3: R.THREE_DAYS,
    5: R.FIVE_DAYS,
    7: R.ONE_WEEK,
    14: R.TWO_WEEKS,
    30: R.ONE_MONTH,
    60: R.TWO_MONTHS,
    90: R.THREE_MONTHS,
    120: R.FOUR_MONTHS,
    150: R.FIVE_MONTHS,
    180: R.SIX_MONTHS,
    365: R.ONE_YEAR,
    400: R.THIRTEEN_MONTHS,
    545: R.EIGHTEEN_MONTHS,
    731: R.TWO_YEARS,
    1096: R.THREE_YEARS,
    1827: R.FIVE_YEARS,
    2192: R.SIX_YEARS,
    2557: R.SEVEN_YEARS,
    2922: R.EIGHT_YEARS,
    3288: R.NINE_YEARS,
    3653: R.TEN_YEARS,
}


@dataclass(frozen=True)
class FunctionSpec:
    label: str  # the catalog name: also the construct ID, so renaming a function replaces it
    description: str
    memory_mb: int
    timeout: Duration
    # Everything the function sees, the probe wrapper's variables included (stacks/backend_bundle.py).
    environment: Mapping[str, str]
    reserved_concurrency: int | None = None


@dataclass(frozen=True)
class NetworkPlacement:
    vpc: ec2.IVpc
    subnets: Sequence[ec2.ISubnet]
    security_groups: Sequence[ec2.ISecurityGroup]


class GuardedFunction(Construct):
    """A function whose traffic only ever reaches a published version through the `live` alias."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: FunctionSpec,
        code: lambda_.Code,
        runtime: lambda_.Runtime,
        architecture: lambda_.Architecture,
        log_retention_days: int,
        network: NetworkPlacement | None = None,
        role: ManagedPolicyRole | None = None,
    ) -> None:
        """`role`: a role shared with other functions that need exactly the same grants (the stack's
        FunctionRole); None: the function gets its own, for grants of its own (queues, failure queue)."""
        super().__init__(scope, construct_id)
        self.label = spec.label
        self.timeout = spec.timeout
        self.log_group = logs.LogGroup(
            self, "Logs", retention=RETENTION_BY_DAYS[log_retention_days], removal_policy=RemovalPolicy.RETAIN
        )
        # Every grant to the function (X-Ray, queues, the key, the secret) lands in one customer-managed
        # policy; the role keeps the logical ID of the one the function used to build itself.
        self.role = role or ManagedPolicyRole(
            self,
            "ServiceRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{spec.label}: the function's own permissions",
            policy_description=f"{spec.label}: its log group, tracing and every grant made to the function",
            keep_logical_id=(*path_below_stack(self), "Function", "ServiceRole", "Resource"),
        )
        self.role.allow_function_basics(self.log_group, in_vpc=network is not None)
        self.function = lambda_.Function(
            self,
            "Function",
            code=code,
            handler=PROBE_HANDLER,
            runtime=runtime,
            architecture=architecture,
            memory_size=spec.memory_mb,
            timeout=spec.timeout,
            description=spec.description,
            environment=dict(spec.environment),
            reserved_concurrent_executions=spec.reserved_concurrency,
            log_group=self.log_group,
            role=self.role,
            tracing=lambda_.Tracing.ACTIVE,
            vpc=network.vpc if network else None,
            vpc_subnets=ec2.SubnetSelection(subnets=list(network.subnets)) if network else None,
            security_groups=list(network.security_groups) if network else None,
        )
        # current_version's logical ID hashes the code and configuration: a new version exactly when they
        # change, which is what starts a CodeDeploy deployment of the alias.
        self.version = self.function.current_version
        self.alias = lambda_.Alias(self, "LiveAlias", alias_name=LIVE_ALIAS, version=self.version)


BASIC_EXECUTION_POLICY = "AWSLambdaBasicExecutionRole"
_AWS_MANAGED = re.compile(r":iam::aws:policy/([A-Za-z0-9+=,.@_/-]+)")


def _aws_managed_names(arns: Sequence[object]) -> list[str] | None:
    """The AWS managed policy names of resolved ManagedPolicyArns, or None if one is not AWS managed."""
    names = []
    for arn in arns:
        match = _AWS_MANAGED.search(json.dumps(arn))
        if match is None:
            return None
        names.append(match.group(1))
    return names


def scope_function_logging(scope: Construct) -> None:
    """Every function under `scope` whose CDK-made role carries AWS's AWSLambdaBasicExecutionRole (logs on
    every log group of the account) gets a customer-managed policy for its own log group instead.

    The role keeps its logical ID: only its ManagedPolicyArns changes (an in-place update); other AWS
    managed policies (the VPC one) stay. A function whose role holds a policy this cannot rebuild is left
    as it is. The function waits for the new policy when its log group is one of this app's (an imported
    /aws/lambda/<name> group names the function, so that wait would be a cycle).
    """
    for fn in [c for c in scope.node.find_all() if isinstance(c, lambda_.Function)]:
        role = fn.role
        if not isinstance(role, iam.Role) or role.node.scope is not fn:
            continue  # a role the caller built: its policies are the caller's
        cfn_role = role.node.default_child
        assert isinstance(cfn_role, iam.CfnRole)
        names = _aws_managed_names(Stack.of(fn).resolve(cfn_role.managed_policy_arns) or [])
        if names is None or BASIC_EXECUTION_POLICY not in [n.rpartition("/")[2] for n in names]:
            continue
        log_group = fn.log_group
        policy = log_writer_policy(
            fn,
            "LogsPolicy",
            description="Writes the function's own log streams",
            log_group=log_group,
            role=role,
        )
        # A fixed list replaces the role's lazy one, so the new policy (attached through its own Roles) is not
        # added here as well, which would make role and policy reference each other.
        kept = [
            iam.ManagedPolicy.from_aws_managed_policy_name(n).managed_policy_arn
            for n in names
            if n.rpartition("/")[2] != BASIC_EXECUTION_POLICY
        ]
        cfn_role.managed_policy_arns = kept or None
        if isinstance(log_group, logs.LogGroup):
            # The function resource only (its role is a child of `fn` too and must not wait for the policy).
            fn.node.find_child("Resource").node.add_dependency(policy)
