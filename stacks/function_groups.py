"""Where each function of a large catalog lives: the environment's main stack, or a nested stack.

CloudFormation allows 500 resources and a 1 MB template per stack, and a nested stack counts on its own.
The first GROUP_SIZE functions of the catalog live in the main stack, as they always have (so no function
of a catalog that grows ever moves); every further GROUP_SIZE functions go to one nested stack,
`FunctionGroup<n>`, deployed with the main stack as one unit. Each stack that holds functions also holds
what watches exactly its functions: the grants of the shared hooks and CodeDeploy role
(deploy_hooks.DeploymentGrants), the out-of-band change rule, the code drift check, the deny policy and a
health alarm the environment's paging alarm includes.

GROUP_SIZE is what those per-stack pieces fit: the drift check lists its targets in one environment variable
(4 KB for all of them), the out-of-band rule its functions in one event pattern (2,048 characters), and
the grants one customer-managed policy each (6,144 characters). tests/test_catalog_limits.py synthesizes a
60-function catalog and checks every limit on the templates.

Placement follows the catalog's order: append new functions at its end. Removing or reordering functions
moves later ones to another stack, which CloudFormation does by replacing them: the stack policy then
refuses the update (their queues and log groups are protected), and `make diff` shows it first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Duration, NestedStack, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.config import EnvironmentConfig, FunctionConfig, SqsTrigger
from stacks.constructs.alarms import ServiceHealthAlarm
from stacks.constructs.dashboard import ServiceDashboard
from stacks.constructs.encryption import EnvironmentKey
from stacks.constructs.guardrails import CodeDriftCheck, DirectMutationDenyPolicy, OutOfBandChangeAlert
from stacks.constructs.managed_policy_role import ManagedPolicyRole
from stacks.function_unit import FunctionUnit, function_queues, needs_own_role

GROUP_SIZE = 12
GROUP_ID = "FunctionGroup{n}"


def placement(functions: Sequence[FunctionConfig]) -> list[tuple[FunctionConfig, ...]]:
    """The functions of each stack, in catalog order: the main stack's first, then each nested group's."""
    return [tuple(functions[i : i + GROUP_SIZE]) for i in range(0, len(functions), GROUP_SIZE)] or [()]


class FunctionGroupStack(NestedStack):
    """A nested stack of the environment's main stack holding GROUP_SIZE functions at most."""

    def __init__(
        self, scope: Construct, construct_id: str, *, functions: Sequence[FunctionConfig], **kwargs: Any
    ) -> None:
        names = ", ".join(f.name for f in functions)
        super().__init__(scope, construct_id, description=f"CredentialMate functions: {names}", **kwargs)


class FunctionGroup:
    """The functions of one stack (the main stack or a FunctionGroupStack) and what watches exactly them.

    Not a Construct: its parts keep stack-level construct IDs (function_unit.py explains why)."""

    def __init__(self, *, stack: Stack, functions: Sequence[FunctionConfig], key: EnvironmentKey) -> None:
        self.stack = stack
        self.functions = tuple(functions)
        self.units: list[FunctionUnit] = []
        self.queues = {
            f.name: function_queues(stack, f, key) for f in functions if isinstance(f.trigger, SqsTrigger)
        }
        self.shared_role = (
            ManagedPolicyRole(
                stack,
                "FunctionRole",
                assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                description="The functions of this stack that need nothing of their own",
                policy_description="Their log groups, tracing and what every function of the stack gets",
            )
            if any(not needs_own_role(f) for f in functions)
            else None
        )
        self.drift_check: CodeDriftCheck | None = None
        self.health: ServiceHealthAlarm | None = None

    @property
    def protected(self) -> list[Construct]:
        """This stack's resources its stack policy must never let CloudFormation replace or delete."""
        return [resource for u in self.units for resource in u.protected]

    @property
    def is_nested(self) -> bool:
        return self.stack.nested_stack_parent is not None

    def watch(
        self, *, config: EnvironmentConfig, topic: sns.ITopic, runbook_url: str
    ) -> list[cloudwatch.IAlarm]:
        """Out-of-band alert, drift check and deny policy for this stack's functions; returns the alarms
        the environment's paging alarm includes for them (a nested group's own health alarm)."""
        guarded = [u.guarded for u in self.units]
        functions = [g.function for g in guarded]
        OutOfBandChangeAlert(self.stack, "OutOfBandChangeAlert", functions=functions, topic=topic)
        self.drift_check = CodeDriftCheck(
            self.stack,
            "CodeDriftCheck",
            targets=[(g.label, g.function, g.alias) for g in guarded],
            stack=self.stack,
            topic=topic,
            schedule=Duration.minutes(config.guardrails.drift_check_minutes),
        )
        if config.guardrails.deny_direct_mutation_role_arns:
            DirectMutationDenyPolicy(
                self.stack,
                "DirectMutationDeny",
                functions=functions,
                role_arns=config.guardrails.deny_direct_mutation_role_arns,
            )
        alarms = [a for u in self.units for a in u.alarms.deployment_alarms]
        if not self.is_nested:
            return alarms
        # A composite alarm takes at most 100 children: each nested group's own, which the main one includes.
        self.health = ServiceHealthAlarm(
            self.stack,
            "GroupHealth",
            alarms=alarms,
            topic=topic,
            runbook_url=runbook_url,
            subject="functions",
        )
        # Its own dashboard too: one body for every function would near CloudFormation's 1 MB template limit.
        self.dashboard(config=config, alarms=[self.health.alarm])
        return [self.health.alarm]

    def dashboard(
        self,
        *,
        config: EnvironmentConfig,
        alarms: Sequence[cloudwatch.IAlarm],
        api: apigw.RestApi | None = None,
    ) -> ServiceDashboard:
        return ServiceDashboard(
            self.stack,
            "Dashboard",
            functions=[u.guarded for u in self.units],
            api=api,
            queues=[(u.config.name, u.queues.queue, u.queues.dlq) for u in self.units if u.queues],
            alarms=alarms,
            thresholds=config.thresholds,
        )
