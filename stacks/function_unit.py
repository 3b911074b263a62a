"""One catalog function and everything it gets: guarded function, trigger, alarms, canary with hooks.

`FunctionUnit` is deliberately not a Construct: its resources keep the stack-level construct IDs of the stacks
already running (`<id>` for the function and alias, `<id>Queue`, `<id>Alarms`, `<id>Canary`, ...; `<id>` is
the catalog name unless the stacks use that name themselves: FunctionConfig.construct_id). Nesting them under
one scope would change every logical ID, and CloudFormation would replace the functions, aliases, queues and
deployment groups. tests/test_catalog_stacks.py compares against the IDs of the live templates. The stack is
the environment's main stack or one of its nested function groups (stacks/function_groups.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.backend_bundle import function_environment, has_post_traffic_checks
from stacks.config import (
    EnvironmentConfig,
    FunctionConfig,
    ScheduleTrigger,
    SqsTrigger,
)
from stacks.constructs.alarms import FunctionAlarms
from stacks.constructs.canary import CanaryDeployment
from stacks.constructs.deploy_hooks import DeploymentHooks
from stacks.constructs.encryption import EnvironmentKey
from stacks.constructs.guarded_function import FunctionSpec, GuardedFunction, NetworkPlacement
from stacks.constructs.managed_policy_role import ManagedPolicyRole


@dataclass(frozen=True)
class FunctionQueues:
    queue: sqs.Queue
    dlq: sqs.Queue


def needs_own_role(fn: FunctionConfig) -> bool:
    """A function with grants of its own (a queue it reads or writes, the failure queue of a schedule) gets
    its own role; every other one shares its stack's FunctionRole, whose grants are what they all need."""
    return bool(fn.queue_urls) or isinstance(fn.trigger, SqsTrigger | ScheduleTrigger)


def function_queues(stack: Stack, fn: FunctionConfig, key: EnvironmentKey) -> FunctionQueues:
    """An SQS-triggered function's queue and dead-letter queue, at stack level (`<name>Queue`), encrypted
    with the environment's key: only the functions' roles write to them (queue_urls grants) and SQS itself
    moves messages to the dead-letter queue, so no AWS service needs the key (constructs/encryption.py).
    """
    dlq = sqs.Queue(
        stack,
        f"{fn.construct_id}DeadLetterQueue",
        retention_period=Duration.days(14),
        enforce_ssl=True,
        **key.queue_kwargs(),
    )
    queue = sqs.Queue(
        stack,
        f"{fn.construct_id}Queue",
        # Six times the function timeout, as Lambda's SQS guidance asks, so retries never overlap.
        visibility_timeout=Duration.seconds(fn.timeout_seconds * 6),
        enforce_ssl=True,
        **key.queue_kwargs(),
        dead_letter_queue=sqs.DeadLetterQueue(queue=dlq, max_receive_count=3),
    )
    return FunctionQueues(queue=queue, dlq=dlq)


@dataclass(frozen=True)
class SharedSettings:
    """What every function of one environment shares."""

    config: EnvironmentConfig
    code: lambda_.Code
    runtime: lambda_.Runtime
    architecture: lambda_.Architecture
    network: NetworkPlacement | None
    queues: Mapping[str, FunctionQueues]
    key: EnvironmentKey
    # The role of the functions of this stack that need nothing of their own (needs_own_role).
    shared_role: ManagedPolicyRole | None = None


@dataclass(frozen=True)
class DeploySettings:
    topic: sns.ITopic
    application: codedeploy.ILambdaApplication
    hooks: DeploymentHooks
    runbook_url: str
    # The API's alarms that roll back API functions.
    api_deployment_alarms: Sequence[cloudwatch.IAlarm]


class FunctionUnit:
    """Built in two steps, because the API (which needs every API function's alias) sits in between:
    the function with its trigger first, then its alarms and canary (which need the API's alarms and URL)."""

    # Built by deploy(), the second step.
    alarms: FunctionAlarms
    canary: CanaryDeployment

    def __init__(self, stack: Stack, fn: FunctionConfig, *, shared: SharedSettings) -> None:
        self.stack, self.config, self.environment_config = stack, fn, shared.config
        self.deployed = False
        queue_env = {var: shared.queues[target].queue.queue_url for var, target in fn.queue_urls}
        self.guarded = GuardedFunction(
            stack,
            fn.construct_id,
            spec=FunctionSpec(
                label=fn.name,
                description=fn.description,
                memory_mb=fn.memory_mb,
                timeout=Duration.seconds(fn.timeout_seconds),
                environment=function_environment(shared.config, fn, queue_env),
                reserved_concurrency=fn.reserved_concurrency,
            ),
            code=shared.code,
            runtime=shared.runtime,
            architecture=shared.architecture,
            log_retention_days=shared.config.log_retention_days,
            network=shared.network,
            role=None if needs_own_role(fn) else shared.shared_role,
        )
        function = self.guarded.function
        for _var, target in fn.queue_urls:
            # Not grant_send_messages: its key grant adds kms:ReEncrypt* and kms:GenerateDataKey*; a producer
            # of a KMS-encrypted queue needs exactly GenerateDataKey and Decrypt (SQS's documented pair).
            shared.queues[target].queue.grant(
                function, "sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"
            )
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[shared.key.key.key_arn]
                )
            )
        if shared.config.secret_arn:
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["secretsmanager:GetSecretValue"], resources=[shared.config.secret_arn]
                )
            )
        # Event sources: always the `live` alias, never the bare function.
        self.queues: FunctionQueues | None = None
        self.schedule_rule: events.Rule | None = None
        trigger = fn.trigger
        if isinstance(trigger, SqsTrigger):
            self.queues = shared.queues[fn.name]
            self.guarded.alias.add_event_source(
                sources.SqsEventSource(
                    self.queues.queue,
                    batch_size=trigger.batch_size,
                    report_batch_item_failures=True,
                    max_concurrency=sqs_max_concurrency(fn.reserved_concurrency),
                )
            )
        elif isinstance(trigger, ScheduleTrigger):
            self.schedule_rule = events.Rule(
                stack,
                trigger.rule_construct_id(fn.construct_id),
                schedule=events.Schedule.expression(trigger.expression),
                enabled=trigger.enabled,
                description=f"Invokes {fn.name} ({fn.handler}) on its schedule",
            )
            self.schedule_rule.add_target(targets.LambdaFunction(self.guarded.alias, retry_attempts=2))

    def deploy(self, settings: DeploySettings, *, grants: Sequence[Construct]) -> None:
        """Alarms and canary; `grants`: the stack's DeploymentGrants, which the alias waits for."""
        fn, g = self.config, self.guarded
        trigger = fn.trigger
        self.alarms = FunctionAlarms(
            self.stack,
            f"{fn.construct_id}Alarms",
            label=fn.name,
            function=g.function,
            alias=g.alias,
            log_group=g.log_group,
            timeout=g.timeout,
            thresholds=fn.thresholds,
            topic=settings.topic,
            runbook_url=settings.runbook_url,
            dlq=self.queues.dlq if self.queues else None,
            expected_invocation_window=(
                expected_window(trigger.expression)
                if isinstance(trigger, ScheduleTrigger) and trigger.enabled
                else None
            ),
        )
        self.canary = CanaryDeployment(
            self.stack,
            f"{fn.construct_id}Canary",
            target=g,
            application=settings.application,
            config=fn.deployment.config,
            alarms=[*self.alarms.deployment_alarms, *(settings.api_deployment_alarms if fn.is_api else [])],
            topic=settings.topic,
            hooks=settings.hooks,
            grants=grants,
            post_traffic=has_post_traffic_checks(fn),
        )
        self.deployed = True

    @property
    def protected(self) -> list[Construct]:
        """Resources a stack policy must never let CloudFormation replace or delete: every one built so far
        (the deployment group only exists once deploy() has run)."""
        g = self.guarded
        out: list[Construct] = [g.function, g.alias, g.log_group]
        if self.deployed:
            out.append(self.canary.deployment_group)
        if self.queues is not None:
            out += [self.queues.queue, self.queues.dlq]
        return out


# The event source mapping's maximum concurrency: Lambda accepts 2 to 1000.
SQS_MAX_CONCURRENCY_RANGE = (2, 1000)


def sqs_max_concurrency(reserved_concurrency: int | None) -> int | None:
    """The SQS event source's maximum concurrency for a function with this reserved concurrency.

    With reserved concurrency alone, Lambda's pollers scale past it, their invocations are throttled and the
    messages return to the queue, each throttle counting as a receive: after three (the redrive policy) a
    message lands in the dead-letter queue without ever being processed. Capping the pollers at the
    reservation keeps the excess in the queue instead. A reservation of 1 is below Lambda's minimum of 2:
    then no cap (None), as without a reservation.
    """
    low, high = SQS_MAX_CONCURRENCY_RANGE
    if reserved_concurrency is None or reserved_concurrency < low:
        return None
    return min(reserved_concurrency, high)


def expected_window(schedule: str) -> Duration:
    """How long without an invocation means a scheduled function missed a run: twice its period, at least 5
    minutes and at most a day (the alarm periods FunctionAlarms accepts; cron: a day, the longest a cron
    expression's period is assumed to be)."""
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", schedule)
    if not match:
        return Duration.days(1)
    amount, unit = int(match.group(1)), match.group(2).rstrip("s")
    minutes = amount * {"minute": 1, "hour": 60, "day": 1440}[unit]
    return Duration.minutes(min(max(2 * minutes, 5), 1440))
