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

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs

from stacks.config import CORS_HEADERS, CORS_METHODS, ApiTrigger, EnvironmentConfig, FunctionConfig
from stacks.constructs.guarded_function import RETENTION_BY_DAYS

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
    """The API for `functions` (API functions with their live aliases)."""
    catch_all = [
        alias for fn, alias in functions if isinstance(fn.trigger, ApiTrigger) and fn.trigger.catch_all
    ]
    common: dict[str, Any] = {
        "description": f"CredentialMate API ({config.name})",
        "cloud_watch_role": True,
        "deploy_options": apigw.StageOptions(
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
    for fn, alias in functions:
        if not isinstance(fn.trigger, ApiTrigger):
            continue
        integration = apigw.LambdaIntegration(alias)
        for path in fn.trigger.paths:
            resource = api.root.resource_for_path(path)
            resource.add_method("ANY", integration)
            resource.add_proxy(default_integration=integration, any_method=True)
    return api
