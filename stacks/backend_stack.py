"""The CredentialMate backend for one environment: every function of the catalog and their safety net.

Composition only: each catalog function is a `FunctionUnit` (guarded function, trigger, alarms, canary); the
shared pieces are one construct each (on-call topic, bundle, API, API alarms, service health, dashboard,
guardrails). Construct IDs here are part of the logical IDs of resources that must never be replaced
(tests/test_catalog_stacks.py compares them with the live templates'): rename none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.backend_bundle import base_environment, bundle_spec, handler_checks, has_post_traffic_checks
from stacks.compliance import acknowledge_backend, acknowledge_shared_deployment
from stacks.config import CORS_HEADERS, CORS_METHODS, ApiTrigger, EnvironmentConfig, ScheduleTrigger
from stacks.constructs.alarm_catalogue import RUNBOOK_URL
from stacks.constructs.alarms import ApiAlarms, AsyncFailures, ServiceHealthAlarm
from stacks.constructs.canary import hooks_code, stage_url
from stacks.constructs.custom_domain import ApiCustomDomain
from stacks.constructs.deploy_hooks import DeploymentGrants, DeploymentHooks, PostTrafficSettings
from stacks.constructs.encryption import EnvironmentKey, apply_stack_security
from stacks.constructs.guarded_function import LIVE_ALIAS, NetworkPlacement
from stacks.constructs.lambda_bundle import VerifiedBundle, start_checks_early, verified_bundle
from stacks.constructs.migrations import MigrationStep, bundle_schema_head
from stacks.constructs.oncall import OnCallTopic
from stacks.constructs.rest_api import API_STAGE, access_log_group, rest_api
from stacks.constructs.waf import ApiFirewall
from stacks.function_groups import GROUP_ID, FunctionGroup, FunctionGroupStack, placement
from stacks.function_unit import DeploySettings, FunctionUnit, SharedSettings
from stacks.hook_budget import DEFAULT_INVOKES, hook_timeout_seconds

REPO_ROOT = Path(__file__).resolve().parents[1]
# Migrations hold the deploy until they finish; most take seconds, a backfill may take minutes.
MIGRATION_TIMEOUT_MINUTES = 10


@dataclass(frozen=True)
class BackendStackProps:
    config: EnvironmentConfig
    backend_root: Path
    cache_dir: Path
    verify_bundle: bool = True


class BackendStack(Stack):
    """Built in the order the pieces need each other: on-call and key, bundle, functions with their
    triggers, migrations, API, then each function's alarms and canary, then what watches all of them."""

    def __init__(
        self, scope: Construct, construct_id: str, *, props: BackendStackProps, **kwargs: Any
    ) -> None:
        config = props.config
        names = ", ".join(f.name for f in config.functions)
        if len(names) > 400:  # CloudFormation's description limit (1,024 bytes), with room to spare
            names = f"{len(config.functions)} functions"
        super().__init__(
            scope,
            construct_id,
            termination_protection=config.termination_protection,
            description=f"CredentialMate backend ({config.name}): {names}",
            **kwargs,
        )
        self.config = config
        self.oncall = OnCallTopic(self, "OnCall", config=config.alarms)
        self.topic = self.oncall.topic
        # The environment's key for what the backend leaves at rest outside its database: every log group,
        # every function's environment and the queues (stacks/constructs/encryption.py).
        # `apply_stack_security` at the end applies it to whatever the constructs below create.
        self.data_key = EnvironmentKey(
            self,
            "DataKey",
            description=f"Encrypts the CredentialMate {config.name} backend's log groups, function "
            "environments and queues",
        )
        self.bundle = self._bundle(props)
        self.network = self._network(config)
        # Every backend function and the migration runner: one bundle, so one runtime and architecture.
        self.runtime = lambda_.Runtime(config.function.runtime, lambda_.RuntimeFamily.PYTHON)
        self.architecture = (
            lambda_.Architecture.ARM_64
            if config.function.architecture == "arm64"
            else lambda_.Architecture.X86_64
        )
        self.application = codedeploy.LambdaApplication(self, "DeployApplication")
        self.groups = self._function_groups(config)
        self.functions = tuple(u.guarded for u in self.units.values())
        self.migrations = self._migrations()
        api_url = self._api()
        self.hooks = self._deployment_hooks(props, api_url)
        deploy = DeploySettings(
            topic=self.topic,
            application=self.application,
            hooks=self.hooks,
            runbook_url=RUNBOOK_URL,
            api_deployment_alarms=self.api_alarms.deployment_alarms if self.api_alarms else [],
        )
        for group in self.groups:
            grants = DeploymentGrants(
                group.stack, "DeploymentGrants", hooks=self.hooks, targets=[u.guarded for u in group.units]
            )
            for unit in group.units:
                unit.deploy(deploy, grants=grants.dependables)
        self.canaries = {name: u.canary for name, u in self.units.items()}
        self._observability()
        self._guardrails()
        # Last, so nothing built above is left out.
        apply_stack_security(self, self.data_key)
        acknowledge_backend(
            self,
            config=config,
            functions=self.functions,
            hooks=self.hooks.hooks,
            api=self.api,
            in_vpc=self.network is not None,
            runtime=config.function.runtime,
            has_firewall=self.firewall is not None,
            checks=[
                *([self.api_alarms.health_check] if self.api_alarms else []),
                *(g.drift_check.function for g in self.groups if g.drift_check),
            ],
        )
        acknowledge_shared_deployment(
            self.hooks, [g.shared_role for g in self.groups if g.shared_role is not None]
        )

    @staticmethod
    def start_bundle_checks(props: BackendStackProps) -> None:
        """Build this environment's bundle and start its import checks before any stack is built, so the
        checks of every environment overlap the whole synth (the stack later finds both under way)."""
        if props.verify_bundle:
            start_checks_early(
                bundle_spec(props.config, backend_root=props.backend_root, cache_dir=props.cache_dir),
                checks=handler_checks(props.config),
            )

    def _bundle(self, props: BackendStackProps) -> VerifiedBundle:
        """One bundle, verified, shared by every function of the catalog; recorded in the template's
        metadata so `make deploy` can refuse an unverified one in prod (scripts/deploy/guard.py)."""
        config = props.config
        bundle = verified_bundle(
            bundle_spec(config, backend_root=props.backend_root, cache_dir=props.cache_dir),
            checks=handler_checks(config),
            verify=props.verify_bundle,
        )
        self.template_options.metadata = {
            "CredmateBundles": [
                {
                    "asset_hash": bundle.result.asset_hash,
                    "zip_sha256": bundle.result.zip_sha256,
                    "verified": bundle.verified,
                    "functions": [f.name for f in config.functions],
                }
            ]
        }
        return bundle

    def _function_groups(self, config: EnvironmentConfig) -> list[FunctionGroup]:
        """Every function with its trigger, in the main stack or a nested group (stacks/function_groups.py).
        Every group's queues exist before any function, since a function may send to another group's."""
        groups: list[FunctionGroup] = []
        for n, functions in enumerate(placement(config.functions)):
            stack: Stack = (
                self if n == 0 else FunctionGroupStack(self, GROUP_ID.format(n=n), functions=functions)
            )
            groups.append(FunctionGroup(stack=stack, functions=functions, key=self.data_key))
        queues = {name: q for g in groups for name, q in g.queues.items()}
        self.units: dict[str, FunctionUnit] = {}
        for group in groups:
            shared = SharedSettings(
                config=config,
                code=self.bundle.code if group.stack is self else self.bundle.new_code(),
                runtime=self.runtime,
                architecture=self.architecture,
                network=self.network,
                queues=queues,
                key=self.data_key,
                shared_role=group.shared_role,
            )
            group.units = [FunctionUnit(group.stack, f, shared=shared) for f in group.functions]
            self.units.update({u.config.name: u for u in group.units})
        return groups

    def _migrations(self) -> MigrationStep | None:
        """Migrations from the same bundle, after the main stack's new versions exist and before any alias
        moves. A nested group deploys as one unit, so its functions wait for the migrations as a whole."""
        config = self.config
        if not config.migrations.enabled:
            return None
        main = self.groups[0]
        return MigrationStep(
            self,
            "Migrations",
            code=self.bundle.code,
            runtime=self.runtime,
            architecture=self.architecture,
            environment={**base_environment(config), **dict(config.migrations.environment)},
            timeout=Duration.minutes(MIGRATION_TIMEOUT_MINUTES),
            log_retention_days=config.log_retention_days,
            execute_after=[u.guarded.function for u in main.units],
            execute_before=[
                *(u.guarded.alias for u in main.units),
                *(g.stack for g in self.groups[1:]),
            ],
            migrations_dir=config.migrations.directory,
            network=self.network,
            secret_arn=config.secret_arn,
            schema_head=bundle_schema_head(self.bundle.result.directory),
        )

    def _deployment_hooks(self, props: BackendStackProps, api_url: str | None) -> DeploymentHooks:
        """The environment's one pre-traffic hook, its one post-traffic hook (when a function has
        post-traffic checks) and CodeDeploy's role, for every deployment group."""
        config = self.config
        post = any(has_post_traffic_checks(f) for f in config.functions)
        return DeploymentHooks(
            self,
            "DeploymentHooks",
            application=self.application,
            code=hooks_code(props.cache_dir, verify=props.verify_bundle),
            topic=self.topic,
            log_retention_days=config.log_retention_days,
            pre_traffic_timeout_seconds=max(
                hook_timeout_seconds(f.timeout_seconds, invokes=DEFAULT_INVOKES if f.is_api else 1)
                for f in config.functions
            ),
            group_count=len(config.functions),
            post_traffic=(
                PostTrafficSettings(
                    api_url=api_url,
                    allowed_origin=config.cors_origins[0],
                    cors_methods=CORS_METHODS,
                    cors_headers=CORS_HEADERS,
                )
                if post and api_url is not None
                else None
            ),
        )

    def _api(self) -> str | None:
        """The API in front of the API functions, its public name, firewall and alarms; returns the URL the
        hooks and the health check call (None without API functions)."""
        config = self.config
        api_units = [u for u in self.units.values() if u.config.is_api]
        self.api: apigw.RestApi | None = None
        self.access_logs: logs.LogGroup | None = None
        self.api_alarms: ApiAlarms | None = None
        self.custom_domain: ApiCustomDomain | None = None
        self.firewall: ApiFirewall | None = None
        if not api_units:
            return None
        self.access_logs = access_log_group(self, config)
        self.api = rest_api(
            self,
            config=config,
            functions=[(u.config, u.guarded.alias) for u in api_units],
            access_logs=self.access_logs,
        )
        # The hooks and the health check call the stage URL, so they test this API even while the public
        # name still points elsewhere.
        if config.custom_domain:
            self.custom_domain = ApiCustomDomain(
                self,
                "CustomDomain",
                settings=config.custom_domain,
                api=self.api,
                stage=self.api.deployment_stage,
            )
        # With the execute-api endpoint disabled, the stage URL answers nothing: the checks go through the
        # name (config allows that only for a domain mapped to this stack's own API).
        api_url = (
            f"https://{config.custom_domain.domain_name}/"
            if config.custom_domain and config.security.disable_execute_api_endpoint
            else stage_url(self.api.rest_api_id, API_STAGE)
        )
        waf = config.security.waf
        if waf.enabled:
            self.firewall = ApiFirewall(
                self,
                "Firewall",
                stage=self.api.deployment_stage,
                login_paths=config.security.login_routes,
                rate_limit_per_5min=waf.login_rate_limit_per_5min,
                topic=self.topic,
                blocked_requests_threshold=int(config.thresholds.waf_blocked_requests),
                count_only_rules=waf.count_only_rules,
                log_destination_arn=waf.log_destination_arn,
                runbook_url=RUNBOOK_URL,
            )
        self.api_alarms = ApiAlarms(
            self,
            "ApiAlarms",
            api=self.api,
            health_url=f"{api_url}{api_health_path(config).lstrip('/')}",
            thresholds=config.thresholds,
            topic=self.topic,
            runbook_url=RUNBOOK_URL,
        )
        return api_url

    def _observability(self) -> None:
        """What watches each stack's functions (stacks/function_groups.py), the composite alarm that pages,
        and the dashboard."""
        watched = [
            a
            for g in self.groups
            for a in g.watch(config=self.config, topic=self.topic, runbook_url=RUNBOOK_URL)
        ]
        self.drift_check = self.groups[0].drift_check
        self.service_health = ServiceHealthAlarm(
            self,
            "ServiceHealth",
            alarms=[*watched, *(self.api_alarms.key_alarms if self.api_alarms else [])],
            topic=self.oncall.paging_topic,
            runbook_url=RUNBOOK_URL,
        )
        self.groups[0].dashboard(config=self.config, alarms=[self.service_health.alarm], api=self.api)

    def _guardrails(self) -> None:
        """Every asynchronously invoked function's failed events land in one queue with one alarm."""
        config = self.config
        self.async_failures = AsyncFailures(
            self,
            "AsyncFailures",
            queue_kwargs=self.data_key.queue_kwargs(),
            key_arn=self.data_key.key.key_arn,
            thresholds=config.thresholds,
            topic=self.topic,
            runbook_url=RUNBOOK_URL,
        )
        for unit in self.units.values():
            if isinstance(unit.config.trigger, ScheduleTrigger):
                self.async_failures.attach(unit.guarded.function)
        for hook in self.hooks.hooks:
            self.async_failures.attach(hook)
        if self.api_alarms is not None:
            self.async_failures.attach(self.api_alarms.health_check)
        for group in self.groups:
            assert group.drift_check is not None
            self.async_failures.attach(group.drift_check.function)

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
        out: list[Construct] = [self.topic, self.oncall.key, self.data_key.key, self.application]
        if self.api is not None and self.access_logs is not None:
            out += [self.api, self.access_logs]
        main, *nested = self.groups
        out += main.protected
        # A nested group's own resources are protected by its own stack policy (app.py); here, the nested
        # stack itself, whose deletion would delete them.
        out += [g.stack.nested_stack_resource for g in nested if g.stack.nested_stack_resource is not None]
        if self.custom_domain is not None:
            out += [self.custom_domain.domain, self.custom_domain.mapping]
        return out


def api_health_path(config: EnvironmentConfig) -> str:
    """What the scheduled health check GETs through the API: a path the API routes to the function that
    serves it (the catch-all's first), as the post-traffic checks do."""
    api = sorted(
        config.api_functions, key=lambda f: not (isinstance(f.trigger, ApiTrigger) and f.trigger.catch_all)
    )
    routed = [f.post_traffic.health_path for f in api if f.post_traffic and f.post_traffic.health_path]
    return routed[0] if routed else "/health"


__all__ = ["LIVE_ALIAS", "BackendStack", "BackendStackProps"]
