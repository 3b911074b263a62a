"""The REST API in front of the catalog's API functions: one stage, CORS preflight, access logs.

The function with no `paths` takes the catch-all proxy (`LambdaRestApi`, as before the catalog, so the API
keeps its logical IDs); each other API function gets its path prefixes (`/goals` and `/goals/{proxy+}`).
Every integration targets a function's `live` alias, so CodeDeploy's traffic shifting applies to the API.
Built at stack scope (construct ID `Api`), never nested: the API is a protected resource whose logical ID
must not change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Aws, Duration, Fn, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs

from stacks.config import (
    CORS_HEADERS,
    CORS_METHODS,
    ApiTrigger,
    EnvironmentConfig,
    FunctionConfig,
    route_owner,
)
from stacks.constructs.guarded_function import RETENTION_BY_DAYS
from stacks.constructs.throttling import ThrottleSettings, route_resource, route_throttled_methods

API_STAGE = "v1"


def access_log_group(stack: Stack, config: EnvironmentConfig) -> logs.LogGroup:
    return logs.LogGroup(
        stack,
        "ApiAccessLogs",
        retention=RETENTION_BY_DAYS[config.log_retention_days],
        removal_policy=RemovalPolicy.RETAIN,
    )


def rest_api(
    stack: Stack,
    *,
    config: EnvironmentConfig,
    functions: Sequence[tuple[FunctionConfig, lambda_.Alias]],
    access_logs: logs.ILogGroup,
) -> apigw.RestApi:
    """The API for `functions` (API functions with their live aliases), throttled as `config.security`
    says: the stage limit, and each throttled route on its own method (stacks/constructs/throttling.py)."""
    catch_all = [
        alias for fn, alias in functions if isinstance(fn.trigger, ApiTrigger) and fn.trigger.catch_all
    ]
    throttle = throttle_settings(config)
    common: dict[str, Any] = {
        "description": f"CredentialMate API ({config.name})",
        "cloud_watch_role": True,
        "disable_execute_api_endpoint": config.security.disable_execute_api_endpoint,
        "deploy_options": apigw.StageOptions(
            stage_name=API_STAGE,
            **throttle.stage_options_kwargs(),
            access_log_destination=apigw.LogGroupLogDestination(access_logs),
            # Every standard field but caller and user: the access log carries no identities.
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
        "default_cors_preflight_options": apigw.CorsOptions(
            allow_origins=list(config.cors_origins),
            allow_methods=list(CORS_METHODS),
            allow_headers=list(CORS_HEADERS),
            max_age=Duration.hours(1),
        ),
    }
    api: apigw.RestApi
    if catch_all:
        api = apigw.LambdaRestApi(stack, "Api", handler=catch_all[0], proxy=True, **common)
    else:
        api = apigw.RestApi(stack, "Api", **common)
    aliases = {fn.name: alias for fn, alias in functions}
    configs = [fn for fn, _alias in functions]
    # One integration, and so one invoke permission, per function however many resources route to it.
    integrations: dict[str, apigw.Integration] = {}

    def integration_of(fn: FunctionConfig | None) -> apigw.Integration | None:
        if fn is None:
            return None
        if fn.name not in integrations:
            integrations[fn.name] = proxy_integration(api, aliases[fn.name])
        return integrations[fn.name]

    # Shorter prefixes first: a resource a longer route passes through may be another function's prefix.
    prefixes = sorted(
        ((path, fn) for fn in configs if isinstance(fn.trigger, ApiTrigger) for path in fn.trigger.paths),
        key=lambda route: (route[0].count("/"), route[0]),
    )
    for path, fn in prefixes:
        integration = integration_of(fn)
        assert integration is not None
        resource = route_resource(api, path, lambda below: integration_of(route_owner(configs, below)))
        resource.add_method("ANY", integration)
        resource.add_proxy(default_integration=integration, any_method=True)
    # Each throttled route to the function that serves its path (the longest routed prefix, else catch-all;
    # stacks/config/load.py refuses a route no function serves).
    for fn, alias in functions:
        routes = tuple(m for m in throttle.method_limits if route_owner(configs, m.path) is fn)
        if routes:
            route_throttled_methods(
                api,
                alias,
                ThrottleSettings(
                    rate_limit=throttle.rate_limit, burst_limit=throttle.burst_limit, method_limits=routes
                ),
            )
    return api


def proxy_integration(api: apigw.IRestApi, alias: lambda_.IFunction) -> apigw.Integration:
    """A Lambda proxy integration to `alias`, with one invoke permission for the whole API, beside the alias
    (in its own stack), instead of LambdaIntegration's two per method: a routed function costs the API's
    stack only its resources and methods, which keeps large catalogs under CloudFormation's resource limit.
    The permission admits this API only; which route reaches which alias is the API's integrations."""
    alias.add_permission(
        "ApiInvoke",
        principal=iam.ServicePrincipal("apigateway.amazonaws.com"),
        source_arn=api.arn_for_execute_api("*", "/*", "*"),
    )
    uri = Fn.join(
        "",
        [
            f"arn:{Aws.PARTITION}:apigateway:{Aws.REGION}:lambda:path/2015-03-31/functions/",
            alias.function_arn,
            "/invocations",
        ],
    )
    return apigw.Integration(type=apigw.IntegrationType.AWS_PROXY, integration_http_method="POST", uri=uri)


def throttle_settings(config: EnvironmentConfig) -> ThrottleSettings:
    """The stage limit, and every route limit (POST on each login route first: stacks/config/security.py)."""
    t = config.security.throttle
    return ThrottleSettings(
        rate_limit=t.rate_limit, burst_limit=t.burst_limit, method_limits=config.security.route_limits
    )
