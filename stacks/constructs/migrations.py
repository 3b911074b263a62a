"""The deploy's migration step: Alembic `upgrade head` in the functions' network, after their new versions
exist and before any `live` alias moves.

A custom resource (`Custom::Migrations`) runs `credmate_migrate.handler` from the same backend bundle as the
functions: the same code, migration scripts, dependencies and configuration. CDK's provider framework
(`custom_resources.Provider`, its own small function outside the VPC) answers CloudFormation and invokes the
migration function's current version synchronously with the custom-resource event itself, so the runner
sees `RequestType`, `ResourceProperties` and `OldResourceProperties` (CDK's `triggers.Trigger` invokes with
an empty event). The resource depends on the functions (`execute_after`) and the aliases depend on it
(`execute_before`), so CloudFormation orders it between them; a failed or refused migration fails the
custom resource, and so the stack update, before CodeDeploy shifts any traffic (and CloudFormation rolls the
functions back). Its properties are the migration function's version (a new bundle or configuration runs
the migrations again, an unchanged one does not) and the bundle's Alembic head (`SchemaHead`).
CloudFormation's rollback sends an Update with the previous properties to the previous version of the
migration function; the runner accepts a database at the head in `OldResourceProperties` (the failed
release's) without any AWS call (lambda_src/migrate/credmate_migrate.py).

Running the migrations before the traffic shift is safe only under the expand/contract rule
(docs/runbook-procedures.md#migrations): during the canary the old version keeps serving on the new schema.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from aws_cdk import Acknowledgment, CfnResource, CustomResource, Duration, RemovalPolicy, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr
from constructs import Construct

from stacks.constructs.guarded_function import RETENTION_BY_DAYS, NetworkPlacement
from stacks.constructs.managed_policy_role import ManagedPolicyRole

MIGRATE_HANDLER = "credmate_migrate.handler"
MIGRATIONS_DIR_ENV = "CREDMATE_MIGRATIONS_DIR"
RESOURCE_TYPE = "Custom::Migrations"
# The runner reads these from the event (lambda_src/migrate/credmate_migrate.py, SCHEMA_HEAD_PROPERTY).
SCHEMA_HEAD_PROPERTY = "SchemaHead"
CODE_VERSION_PROPERTY = "CodeVersion"
# The Trigger's provider invokes synchronously; Lambda's own ceiling for one invocation.
MAX_TIMEOUT = Duration.minutes(15)
AS, HIPAA = "AwsSolutions::AwsSolutions", "HIPAA.Security::HIPAA.Security"


def bundle_schema_head(bundle_dir: Path) -> str | None:
    """The Alembic head the bundler recorded in the bundle's build_info.json (None without migrations)."""
    try:
        head = json.loads((bundle_dir / "build_info.json").read_text()).get("schema_head")
    except (OSError, ValueError, AttributeError):
        return None
    return head if isinstance(head, str) and head else None


class MigrationStep(Construct):
    """One migration function and the trigger that runs it once per deploy of a new bundle."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        runtime: lambda_.Runtime,
        architecture: lambda_.Architecture,
        environment: Mapping[str, str],
        timeout: Duration,
        log_retention_days: int,
        execute_after: Sequence[Construct],
        execute_before: Sequence[Construct],
        migrations_dir: str = "migrations",
        network: NetworkPlacement | None = None,
        secret_arn: str | None = None,
        memory_mb: int = 512,
        schema_head: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        if not execute_after or not execute_before:
            raise ValueError(
                f"MigrationStep {self.node.path}: execute_after (the functions) and execute_before (their "
                "live aliases) must both be given, or the migrations are not ordered before the traffic shift"
            )
        if timeout.to_seconds() > MAX_TIMEOUT.to_seconds():
            raise ValueError(
                f"MigrationStep {self.node.path}: timeout {timeout.to_seconds()} s is above Lambda's 900 s"
            )
        self.log_group = logs.LogGroup(
            self, "Logs", retention=RETENTION_BY_DAYS[log_retention_days], removal_policy=RemovalPolicy.RETAIN
        )
        # Its grants (X-Ray, this stack's status, the secret, the key) in one customer-managed policy.
        self.role = ManagedPolicyRole(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Migration runner: upgrades the backend's database schema in a deploy",
            policy_description="Migration runner: its log group, tracing, the secret",
        )
        self.role.allow_function_basics(self.log_group, in_vpc=network is not None)
        # A plain function (no alias, canary or alarms: a deploy step, not a service); its keyword arguments
        # are alike in shape to other constructor calls, with no logic to share.
        self.function = lambda_.Function(
            self,
            "Function",
            role=self.role,
            code=code,
            handler=MIGRATE_HANDLER,
            runtime=runtime,
            architecture=architecture,
            memory_size=memory_mb,
            timeout=timeout,
            description="Runs the backend's Alembic migrations (upgrade head) in a deploy, before traffic",
            environment={**environment, MIGRATIONS_DIR_ENV: migrations_dir},
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE,
            # The trigger invokes synchronously and fails the deploy itself: never retry a migration.
            retry_attempts=0,
            vpc=network.vpc if network else None,
            vpc_subnets=ec2.SubnetSelection(subnets=list(network.subnets)) if network else None,
            security_groups=list(network.security_groups) if network else None,
        )
        if secret_arn:
            self.function.add_to_role_policy(
                iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"], resources=[secret_arn])
            )
        version = self.function.current_version
        # The framework's own function: outside the VPC (it calls Lambda and answers CloudFormation's S3
        # response URL), logging to a group with the step's retention.
        self.provider_logs = logs.LogGroup(
            self,
            "ProviderLogs",
            retention=RETENTION_BY_DAYS[log_retention_days],
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.provider = cr.Provider(
            self,
            "Provider",
            on_event_handler=version,
            log_group=self.provider_logs,
        )
        self.resource = CustomResource(
            self,
            "Run",
            service_token=self.provider.service_token,
            resource_type=RESOURCE_TYPE,
            properties={CODE_VERSION_PROPERTY: version.version, SCHEMA_HEAD_PROPERTY: schema_head or ""},
        )
        for before in execute_after:
            self.resource.node.add_dependency(before)
        for after in execute_before:
            after.node.add_dependency(self.resource)
        self._acknowledge(in_vpc=network is not None, runtime=runtime.name)

    def _acknowledge(self, *, in_vpc: bool, runtime: str) -> None:
        fn = self.function.node.default_child
        assert isinstance(fn, CfnResource)
        findings = [
            (
                f"{AS}-IAM5[Resource::*]",
                "X-Ray PutTraceSegments/PutTelemetryRecords support no resource scoping",
            ),
            (
                f"{AS}-L1",
                f"runs the backend's bundle, so it must use the backend's pinned runtime ({runtime})",
            ),
            (
                f"{HIPAA}-LambdaConcurrency",
                "invoked once per deploy by the CloudFormation trigger; CloudFormation runs one update of a "
                "stack at a time, so migrations never run concurrently",
            ),
            (
                f"{HIPAA}-LambdaDLQ",
                "invoked synchronously by the trigger, which fails the deploy on error; there is no event to "
                "dead-letter and a migration must never be retried blindly",
            ),
        ]
        if in_vpc:
            findings.append(
                (
                    f"{AS}-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                    "AWSLambdaVPCAccessExecutionRole]",
                    "AWS's policy for functions in a VPC: managing the function's own network interfaces",
                )
            )
        else:
            findings.append(
                (
                    f"{HIPAA}-LambdaInsideVPC",
                    "this environment configures no network in cdk.json; the migration function runs where "
                    "the backend functions run",
                )
            )
        for target in (self.function, fn, self.role):
            Validations.of(target).acknowledge(*(Acknowledgment(id=r, reason=why) for r, why in findings))
        framework = [
            (
                f"{AS}-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSLambdaBasicExecutionRole]",
                "CDK's provider framework function (custom_resources.Provider) writes its own logs only",
            ),
            (
                f"{HIPAA}-IAMNoInlinePolicy",
                "CDK's provider framework grants itself invoke on the migration function's version only",
            ),
            (
                f"{HIPAA}-LambdaConcurrency",
                "CloudFormation invokes the provider framework once per stack update of the migration step",
            ),
            (
                f"{HIPAA}-LambdaDLQ",
                "invoked synchronously by CloudFormation, which fails the deploy on error; nothing to "
                "dead-letter",
            ),
            (
                f"{HIPAA}-LambdaInsideVPC",
                "the provider framework only calls the Lambda API and CloudFormation's S3 response URL; it "
                "never reaches the database, so it runs outside the VPC (no NAT needed)",
            ),
        ]
        Validations.of(self.provider).acknowledge(*(Acknowledgment(id=r, reason=why) for r, why in framework))
