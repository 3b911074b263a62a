"""The CredentialMate backend for one environment: API, worker queue, campaign schedule, and their safety net.

Composition only: every concern is one construct in stacks/constructs/ (bundling, guarded function,
canary, alarms, on-call, guardrails). Construct IDs here are part of the logical IDs of resources that must
never be replaced (see tests/test_logical_ids.py): rename none of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.compliance import acknowledge_backend
from stacks.config import CORS_HEADERS, CORS_METHODS, EnvironmentConfig
from stacks.constructs.alarms import AlarmThresholds, ApiAlarms, FunctionAlarms, ServiceHealthAlarm
from stacks.constructs.bundling import DEFAULT_EXCLUDES, BundleSpec, HandlerCheck, bytecode_modules_for
from stacks.constructs.canary import CanaryDeployment, PostTrafficChecks, stage_url
from stacks.constructs.custom_domain import ApiCustomDomain
from stacks.constructs.dashboard import ServiceDashboard
from stacks.constructs.guarded_function import (
    LIVE_ALIAS,
    PROBE_HANDLER,
    RETENTION_BY_DAYS,
    FunctionSpec,
    GuardedFunction,
    NetworkPlacement,
)
from stacks.constructs.guardrails import CodeDriftCheck, DirectMutationDenyPolicy, OutOfBandChangeAlert
from stacks.constructs.lambda_bundle import verified_bundle
from stacks.constructs.oncall import OnCallConfig, OnCallTopic

REPO_ROOT = Path(__file__).resolve().parents[1]
PROBE_MODULE = REPO_ROOT / "lambda_src" / "probe" / "credmate_probe.py"
HOOKS_SRC = REPO_ROOT / "lambda_src" / "hooks"
API_STAGE = "v1"
RUNBOOK_URL = "https://github.com/credentialmate/credmate-lambda/blob/main/docs/runbook.md"
# Packages the handlers import lazily; the probe imports them so a missing one fails the canary, not a user.
PROBE_IMPORTS = ("sqlalchemy", "alembic", "psycopg2", "jose", "passlib", "httpx", "boto3")


@dataclass(frozen=True)
class BackendStackProps:
    config: EnvironmentConfig
    backend_root: Path
    cache_dir: Path
    verify_bundle: bool = True


class BackendStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, props: BackendStackProps, **kwargs: Any
    ) -> None:
        config = props.config
        super().__init__(
            scope,
            construct_id,
            termination_protection=config.termination_protection,
            description=f"CredentialMate backend ({config.name}): API, worker, campaign scheduler",
            **kwargs,
        )
        fn_cfg = config.function
        runtime = lambda_.Runtime(fn_cfg.runtime, lambda_.RuntimeFamily.PYTHON)
        architecture = (
            lambda_.Architecture.ARM_64 if fn_cfg.architecture == "arm64" else lambda_.Architecture.X86_64
        )

        oncall = OnCallTopic(
            self,
            "OnCall",
            config=OnCallConfig(
                emails=config.alarms.emails,
                slack_workspace_id=config.alarms.slack_workspace_id,
                slack_channel_id=config.alarms.slack_channel_id,
                paging_url=config.alarms.paging_url,
            ),
        )
        self.topic = oncall.topic
        self.oncall = oncall

        # ---- one bundle, verified, shared by the three functions
        labels = {
            "BackendApi": "handler.lambda_handler",
            "Worker": "worker.lambda_handler",
            "CampaignScheduler": "campaign_scheduler.lambda_handler",
        }
        spec = BundleSpec(
            source_dir=props.backend_root / "src",
            requirements=props.backend_root / "requirements.txt",
            cache_dir=props.cache_dir,
            runtime=fn_cfg.runtime,
            architecture=fn_cfg.architecture,
            excludes=DEFAULT_EXCLUDES,
            extra_files=(("credmate_probe.py", PROBE_MODULE),),
            # Bytecode for what init imports: the probe and each real handler's module, and their imports.
            bytecode_modules=bytecode_modules_for([PROBE_HANDLER, *labels.values()]),
        )
        checks = [
            HandlerCheck(
                function=label,
                handler=PROBE_HANDLER,
                http_health=label == "BackendApi",
                environment=(("CREDMATE_REAL_HANDLER", real),),
            )
            for label, real in labels.items()
        ]
        self.bundle = verified_bundle(spec, checks=checks, verify=props.verify_bundle)

        # ---- queue, network, shared settings
        dlq = sqs.Queue(
            self,
            "WorkerDeadLetterQueue",
            retention_period=Duration.days(14),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
        queue = sqs.Queue(
            self,
            "WorkerQueue",
            # Six times the function timeout, as Lambda's SQS guidance asks, so retries never overlap.
            visibility_timeout=Duration.seconds(fn_cfg.timeout_seconds * 6),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(queue=dlq, max_receive_count=3),
        )
        network = self._network(config)
        common_env = {"ENVIRONMENT": config.name, "CORS_ALLOWED_ORIGINS": ",".join(config.cors_origins)}
        if config.secret_arn:
            common_env["COMBINED_SECRET_ARN"] = config.secret_arn

        def guarded(label: str, description: str, extra_env: dict[str, str]) -> GuardedFunction:
            return GuardedFunction(
                self,
                label,
                spec=FunctionSpec(
                    label=label,
                    real_handler=labels[label],
                    description=description,
                    memory_mb=fn_cfg.memory_mb,
                    timeout=Duration.seconds(fn_cfg.timeout_seconds),
                    environment={**common_env, **extra_env},
                    probe_imports=PROBE_IMPORTS,
                ),
                code=self.bundle.code,
                runtime=runtime,
                architecture=architecture,
                log_retention_days=config.log_retention_days,
                network=network,
            )

        api_fn = guarded("BackendApi", "CredentialMate REST API (FastAPI via Mangum)", {})
        worker = guarded("Worker", "CredentialMate document processing (SQS)", {})
        scheduler = guarded(
            "CampaignScheduler",
            "CredentialMate renewal campaigns (schedule)",
            {"WORKER_QUEUE_URL": queue.queue_url},
        )
        self.functions = (api_fn, worker, scheduler)
        queue.grant_send_messages(scheduler.function)
        if config.secret_arn:
            for g in self.functions:
                g.function.add_to_role_policy(
                    iam.PolicyStatement(
                        actions=["secretsmanager:GetSecretValue"], resources=[config.secret_arn]
                    )
                )

        # ---- event sources: always the `live` alias, never the bare function
        worker.alias.add_event_source(
            sources.SqsEventSource(queue, batch_size=10, report_batch_item_failures=True)
        )
        schedule_rule = events.Rule(
            self,
            "CampaignSchedule",
            schedule=events.Schedule.expression(config.campaign_schedule),
            enabled=config.campaign_schedule_enabled,
            description="Starts the CredentialMate renewal campaign run",
        )
        schedule_rule.add_target(targets.LambdaFunction(scheduler.alias, retry_attempts=2))

        access_logs = logs.LogGroup(
            self,
            "ApiAccessLogs",
            retention=RETENTION_BY_DAYS[config.log_retention_days],
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.api = apigw.LambdaRestApi(
            self,
            "Api",
            handler=api_fn.alias,
            proxy=True,
            description=f"CredentialMate API ({config.name})",
            cloud_watch_role=True,
            deploy_options=apigw.StageOptions(
                stage_name=API_STAGE,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=False,
                ),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                tracing_enabled=True,
                metrics_enabled=True,
            ),
            default_cors_preflight_options=apigw.CorsOptions(
                allow_origins=list(config.cors_origins),
                allow_methods=list(CORS_METHODS),
                allow_headers=list(CORS_HEADERS),
                max_age=Duration.hours(1),
            ),
        )

        # The public name (api.credentialmate.com) when configured; the hooks and the health check keep
        # calling the stage URL, so they test this API even while the name still points elsewhere.
        self.custom_domain = (
            ApiCustomDomain(
                self,
                "CustomDomain",
                settings=config.custom_domain,
                api=self.api,
                stage=self.api.deployment_stage,
            )
            if config.custom_domain
            else None
        )

        # ---- alarms, canary deployments, dashboard
        thresholds = AlarmThresholds(**dict(config.alarms.thresholds))
        application = codedeploy.LambdaApplication(self, "DeployApplication")
        hooks_code = lambda_.Code.from_asset(str(HOOKS_SRC), exclude=["__pycache__", "*.pyc"])
        api_url = stage_url(self.api.rest_api_id, API_STAGE)
        self.api_alarms = ApiAlarms(
            self,
            "ApiAlarms",
            api=self.api,
            health_url=f"{api_url}health",
            thresholds=thresholds,
            topic=self.topic,
            runbook_url=RUNBOOK_URL,
        )
        self.function_alarms: dict[str, FunctionAlarms] = {}
        self.canaries: dict[str, CanaryDeployment] = {}
        for g in self.functions:
            alarms = FunctionAlarms(
                self,
                f"{g.label}Alarms",
                label=g.label,
                function=g.function,
                alias=g.alias,
                log_group=g.log_group,
                timeout=g.timeout,
                thresholds=thresholds,
                topic=self.topic,
                runbook_url=RUNBOOK_URL,
                dlq=dlq if g is worker else None,
                expected_invocation_window=(
                    _window(config.campaign_schedule)
                    if g is scheduler and config.campaign_schedule_enabled
                    else None
                ),
            )
            self.function_alarms[g.label] = alarms
            self.canaries[g.label] = CanaryDeployment(
                self,
                f"{g.label}Canary",
                target=g,
                application=application,
                config=config.deployment.config,
                alarms=[
                    *alarms.deployment_alarms,
                    *(self.api_alarms.deployment_alarms if g is api_fn else []),
                ],
                topic=self.topic,
                hooks_code=hooks_code,
                check_http_health=g is api_fn,
                schema_mismatch=config.deployment.schema_mismatch,
                post_traffic=PostTrafficChecks(
                    api_url=api_url,
                    allowed_origin=config.cors_origins[0],
                    cors_methods=CORS_METHODS,
                    cors_headers=CORS_HEADERS,
                )
                if g is api_fn
                else None,
            )
        key_alarms = [a for fa in self.function_alarms.values() for a in fa.deployment_alarms]
        self.service_health = ServiceHealthAlarm(
            self,
            "ServiceHealth",
            alarms=[*key_alarms, *self.api_alarms.key_alarms],
            topic=oncall.paging_topic,
            runbook_url=RUNBOOK_URL,
        )
        ServiceDashboard(
            self,
            "Dashboard",
            functions=self.functions,
            api=self.api,
            queue=queue,
            dlq=dlq,
            alarms=[self.service_health.alarm],
            thresholds=thresholds,
        )

        # ---- guardrails against change outside `cdk deploy`
        OutOfBandChangeAlert(
            self, "OutOfBandChangeAlert", functions=[g.function for g in self.functions], topic=self.topic
        )
        CodeDriftCheck(
            self,
            "CodeDriftCheck",
            targets=[(g.label, g.function, g.alias) for g in self.functions],
            stack=self,
            topic=self.topic,
            schedule=Duration.minutes(config.guardrails.drift_check_minutes),
        )
        if config.guardrails.deny_direct_mutation_role_arns:
            DirectMutationDenyPolicy(
                self,
                "DirectMutationDeny",
                functions=[g.function for g in self.functions],
                role_arns=config.guardrails.deny_direct_mutation_role_arns,
            )
        self.queue, self.dlq, self.schedule_rule, self.access_logs = queue, dlq, schedule_rule, access_logs
        acknowledge_backend(
            self,
            functions=self.functions,
            canaries=self.canaries.values(),
            api=self.api,
            access_logs=access_logs,
            in_vpc=network is not None,
            runtime=fn_cfg.runtime,
        )
        self.application = application

    def _network(self, config: EnvironmentConfig) -> NetworkPlacement | None:
        net = config.network
        if net is None:
            return None
        # Imported by ID with explicit zones: nothing is looked up at synth, so no credentials are needed.
        vpc = ec2.Vpc.from_vpc_attributes(
            self,
            "Vpc",
            vpc_id=net.vpc_id,
            availability_zones=list(net.availability_zones),
            private_subnet_ids=list(net.subnet_ids),
        )
        subnets = [
            ec2.Subnet.from_subnet_attributes(self, f"Subnet{i}", subnet_id=s, availability_zone=az)
            for i, (s, az) in enumerate(zip(net.subnet_ids, net.availability_zones, strict=True))
        ]
        groups = [
            ec2.SecurityGroup.from_security_group_id(self, f"SecurityGroup{i}", g, mutable=False)
            for i, g in enumerate(net.security_group_ids)
        ]
        return NetworkPlacement(vpc=vpc, subnets=subnets, security_groups=groups)

    @property
    def protected_resources(self) -> list[Construct]:
        """Resources a stack policy must never let CloudFormation replace or delete."""
        out: list[Construct] = [
            self.api,
            self.topic,
            self.oncall.key,
            self.queue,
            self.dlq,
            self.access_logs,
            self.application,
        ]
        for g in self.functions:
            out += [g.function, g.alias, g.log_group, self.canaries[g.label].deployment_group]
        if self.custom_domain is not None:
            out += [self.custom_domain.domain, self.custom_domain.mapping]
        return out


def _window(schedule: str) -> Duration:
    """How long without an invocation means the scheduler missed a run: twice its period (cron: a day)."""
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", schedule)
    if not match:
        return Duration.days(1)
    amount, unit = int(match.group(1)), match.group(2).rstrip("s")
    minutes = amount * {"minute": 1, "hour": 60, "day": 1440}[unit]
    return Duration.minutes(2 * minutes)


__all__ = ["LIVE_ALIAS", "BackendStack", "BackendStackProps"]
