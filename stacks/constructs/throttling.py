"""API Gateway throttling: a stage-wide limit plus stricter limits on chosen routes (e.g. POST on login).

API Gateway throttles per stage and per method *resource*, for all callers together (per-client limits are
the web ACL's rate rule: stacks/constructs/waf.py). On a proxy API (`LambdaRestApi(proxy=True)`) every
route is the one `/{proxy+}` resource, so a method setting for `/api/v1/auth/login/POST` would name a
resource that does not exist and API Gateway would refuse the stage. `route_throttled_methods` therefore
gives each throttled route its own resource and method, with the same Lambda proxy integration: requests
reach the backend unchanged (Mangum routes on the request path, which is the same), and the limit applies
to that route alone.

Usage (the StageOptions are fixed when the RestApi is built):

    throttle = ThrottleSettings(rate_limit=100, burst_limit=200,
                                method_limits=(MethodLimit("/api/v1/auth/login", "POST", 5, 10),))
    api = apigw.LambdaRestApi(..., deploy_options=apigw.StageOptions(stage_name="v1",
                                                                    **throttle.stage_options_kwargs()))
    route_throttled_methods(api, handler, throttle)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsii
from aws_cdk import Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from constructs import Construct, IValidation

from stacks.config import MethodLimit


@dataclass(frozen=True)
class ThrottleSettings:
    """The stage's limit and the stricter route limits, as stacks/config/security.py validated them (a route
    limit at most the stage's, each route once, literal paths)."""

    rate_limit: float
    burst_limit: int
    method_limits: tuple[MethodLimit, ...] = ()

    def stage_options_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `apigw.StageOptions(...)`."""
        return {
            "throttling_rate_limit": self.rate_limit,
            "throttling_burst_limit": self.burst_limit,
            "method_options": {
                m.method_options_key: apigw.MethodDeploymentOptions(
                    throttling_rate_limit=m.rate_limit, throttling_burst_limit=m.burst_limit
                )
                for m in self.method_limits
            },
        }


def route_resource(
    api: apigw.RestApi, path: str, serving: Callable[[str], apigw.Integration | None]
) -> apigw.IResource:
    """The API's resource for a routed prefix, creating what is missing, beside a catch-all's `{proxy+}` too
    (a proxying LambdaRestApi refuses add_resource on its root, but explicit resources are valid there and
    win for their own paths). API Gateway does not fall back to a shorter match: once `/api/v1/goals` exists,
    `/api/v1/other` no longer reaches the root's `{proxy+}`. So each resource created on the way gets a
    `{proxy+}` to whichever function serves the paths below it (`serving(path)`), when one does."""
    resource: apigw.IResource = api.root
    parts = path.strip("/").split("/")
    for i, part in enumerate(parts):
        child = resource.get_resource(part)
        if child is None:
            assert isinstance(resource, Construct)
            child = apigw.Resource(resource, part, parent=resource, path_part=part)
            below = serving("/" + "/".join([*parts[: i + 1], "{proxy+}"])) if i < len(parts) - 1 else None
            if below is not None:
                child.add_proxy(default_integration=below, any_method=True)
        resource = child
    return resource


def route_throttled_methods(
    api: apigw.RestApi, handler: lambda_.IFunction, settings: ThrottleSettings
) -> list[apigw.Method]:
    """Give every throttled route its own resource and method (Lambda proxy integration to `handler`).

    Also adds a synth-time check that every method setting of the API's stage names a method the API
    defines, so a route limit can never silently name nothing (API Gateway would refuse the stage).
    """
    integration = apigw.LambdaIntegration(handler, proxy=True)
    methods: list[apigw.Method] = []
    for m in settings.method_limits:
        resource = route_resource(api, m.path, lambda _below: integration)
        if resource.node.try_find_child(m.method) is None:
            methods.append(resource.add_method(m.method, integration))
    api.node.add_validation(_Validation(lambda: unmatched_method_settings(api)))
    return methods


def unmatched_method_settings(api: apigw.RestApi) -> list[str]:
    """One error per stage method setting (other than the stage-wide `/*/*`) naming no method of `api`."""
    stage = api.deployment_stage.node.default_child
    if not isinstance(stage, apigw.CfnStage):
        return []
    defined = {(method.resource.path, method.http_method) for method in api.methods}
    resolved = Stack.of(api).resolve(stage.method_settings) or []
    errors = []
    for setting in resolved:
        # API Gateway's encoding of a resource path in a method setting: "/" then the path, "/" as "~1".
        raw = str(setting.get("resourcePath", "/*"))
        path = raw[1:].replace("~1", "/") if raw.startswith("/~1") else raw
        method = str(setting.get("httpMethod", "*"))
        if (path, method) == ("/*", "*") or (path, method) in defined:
            continue
        errors.append(
            f"the stage of API {api.node.path} throttles {method} {path}, which the "
            "API does not define: pass the same ThrottleSettings to route_throttled_methods "
            "(security.throttle.method_limits in cdk.json)"
        )
    return errors


@jsii.implements(IValidation)
class _Validation:
    """A construct validation around a plain function (errors fail synth)."""

    def __init__(self, check: Callable[[], list[str]]) -> None:
        self._check = check

    def validate(self) -> list[str]:
        return self._check()
