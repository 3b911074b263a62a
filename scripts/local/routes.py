"""The REST API as API Gateway would serve it, read from the synthesized template: the stage, the resource
tree and its methods, the function each AWS_PROXY integration invokes, MOCK integrations (the CORS
preflight), BinaryMediaTypes and stage variables.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from scripts.local.stack import (
    LocalStackError,
    Template,
    referenced_ids,
)


# Records only: `duplicates` pairs their field lists with other records' by shape; no logic repeats.
@dataclass(frozen=True)
class MockResponse:
    status: int
    headers: dict[str, str]
    override_origins: tuple[str, ...]  # CDK's CORS template: echo Origin when it is one of these
    unsupported_template: bool


@dataclass(frozen=True)
class Integration:
    kind: str  # "proxy", "mock" or the unsupported type
    function: str | None = None
    mock: MockResponse | None = None


@dataclass(frozen=True)
class Resource:
    path: str  # "/{proxy+}"
    parts: tuple[str, ...]
    methods: dict[str, Integration] = field(default_factory=dict)


@dataclass(frozen=True)
class Api:
    logical_id: str
    stage: str
    resources: tuple[Resource, ...]
    binary_media_types: tuple[str, ...]
    stage_variables: dict[str, str] | None
    skipped: tuple[str, ...] = ()

    @property
    def functions(self) -> set[str]:
        return {i.function for r in self.resources for i in r.methods.values() if i.function}

    def match(self, parts: Sequence[str]) -> tuple[Resource, dict[str, str]] | None:
        """The most specific resource for a path: literal beats {param} beats {greedy+}, per segment."""
        best: tuple[tuple[int, ...], Resource, dict[str, str]] | None = None
        for resource in self.resources:
            got = _match_parts(resource.parts, parts)
            if got is None:
                continue
            score, params = got
            if best is None or score > best[0]:
                best = (score, resource, params)
        return None if best is None else (best[1], best[2])


def _match_parts(
    pattern: Sequence[str], parts: Sequence[str]
) -> tuple[tuple[int, ...], dict[str, str]] | None:
    params: dict[str, str] = {}
    score: list[int] = []
    for i, piece in enumerate(pattern):
        if piece.startswith("{") and piece.endswith("+}"):
            rest = parts[i:]
            if i != len(pattern) - 1 or not rest or any(p == "" for p in rest):
                return None
            params[piece[1:-2]] = "/".join(rest)
            return (*score, 0), params
        if i >= len(parts):
            return None
        if piece.startswith("{") and piece.endswith("}"):
            if not parts[i]:
                return None
            params[piece[1:-1]] = parts[i]
            score.append(1)
        elif piece == parts[i]:
            score.append(2)
        else:
            return None
    return (tuple(score), params) if len(parts) == len(pattern) else None


_ORIGIN_CONDITION = re.compile(r'\$origin\s*==\s*"([^"]*)"')


def _mock(props: dict[str, Any]) -> MockResponse:
    integration = props.get("Integration", {})
    request = (integration.get("RequestTemplates") or {}).get("application/json", "")
    found = re.search(r"statusCode\"?\s*:\s*(\d{3})", request)
    code = found.group(1) if found else "200"
    responses = integration.get("IntegrationResponses") or []
    chosen = next(
        (r for r in responses if r.get("SelectionPattern") and re.fullmatch(r["SelectionPattern"], code)),
        next((r for r in responses if not r.get("SelectionPattern")), None),
    )
    if chosen is None:
        return MockResponse(500, {}, (), False)
    headers: dict[str, str] = {}
    for key, value in (chosen.get("ResponseParameters") or {}).items():
        if key.startswith("method.response.header.") and isinstance(value, str) and value[:1] == "'":
            headers[key.removeprefix("method.response.header.")] = value.strip("'")
    template = (chosen.get("ResponseTemplates") or {}).get("application/json", "")
    origins: tuple[str, ...] = ()
    unsupported = False
    if template.strip():
        if "$context.responseOverride.header.Access-Control-Allow-Origin = $origin" in template:
            origins = tuple(_ORIGIN_CONDITION.findall(template))
        # Only directives (#set/#if/#end) are understood; text would be a response body nobody renders here.
        unsupported = any(line.strip() and not line.strip().startswith("#") for line in template.splitlines())
    return MockResponse(int(chosen.get("StatusCode", 200)), headers, origins, unsupported)


def load_api(template: Template, api_id: str | None = None) -> Api:
    apis = template.of_type("AWS::ApiGateway::RestApi")
    if not apis:
        raise LocalStackError(f"{template.path.name} has no AWS::ApiGateway::RestApi: nothing to serve")
    if api_id is None:
        if len(apis) > 1:
            raise LocalStackError(
                f"{template.path.name} has several REST APIs ({', '.join(apis)}): pick one with --api"
            )
        api_id = next(iter(apis))
    if api_id not in apis:
        raise LocalStackError(f"--api {api_id}: not a REST API of {template.path.name} ({', '.join(apis)})")

    def belongs(props: dict[str, Any]) -> bool:
        return api_id in referenced_ids(props.get("RestApiId"))

    stages = [p for p in map(template.props, template.of_type("AWS::ApiGateway::Stage")) if belongs(p)]
    if stages:
        stage_name, variables = str(stages[0].get("StageName")), stages[0].get("Variables")
    else:
        deployments = [
            p for p in map(template.props, template.of_type("AWS::ApiGateway::Deployment")) if belongs(p)
        ]
        named = [d for d in deployments if d.get("StageName")]
        if not named:
            raise LocalStackError(f"{template.path.name}: REST API {api_id} has no stage")
        stage_name, variables = str(named[0]["StageName"]), None

    # Resource tree: the root is Fn::GetAtt <api>.RootResourceId; every other node a Ref to its resource.
    paths: dict[str, tuple[str, ...]] = {"": ()}
    pending = {rid: template.props(rid) for rid in template.of_type("AWS::ApiGateway::Resource")}
    pending = {rid: p for rid, p in pending.items() if belongs(p)}
    while pending:
        progressed = False
        for rid, props in list(pending.items()):
            parent = props.get("ParentId")
            parent_ref = (
                ""
                if isinstance(parent, dict) and "Fn::GetAtt" in parent
                else (referenced_ids(parent) or ["?"])[0]
            )
            if parent_ref in paths:
                paths[rid] = (*paths[parent_ref], str(props.get("PathPart")))
                del pending[rid]
                progressed = True
        if not progressed:
            raise LocalStackError(
                f"{template.path.name}: API resources {', '.join(pending)} have unknown parents"
            )

    methods: dict[str, dict[str, Integration]] = {rid: {} for rid in paths}
    skipped: list[str] = []
    for mid in template.of_type("AWS::ApiGateway::Method"):
        props = template.props(mid)
        if not belongs(props):
            continue
        target = props.get("ResourceId")
        rid = (
            ""
            if isinstance(target, dict) and "Fn::GetAtt" in target
            else (referenced_ids(target) or ["?"])[0]
        )
        if rid not in methods:
            skipped.append(f"{mid}: unknown resource")
            continue
        integration = props.get("Integration", {})
        kind = str(integration.get("Type", ""))
        if kind == "AWS_PROXY":
            function = template.function_of(integration.get("Uri"))
            if function is None:
                skipped.append(f"{mid}: AWS_PROXY integration to something other than a Lambda function")
                methods[rid][str(props["HttpMethod"])] = Integration("unsupported: AWS_PROXY to non-Lambda")
                continue
            methods[rid][str(props["HttpMethod"])] = Integration("proxy", function=function)
        elif kind == "MOCK":
            methods[rid][str(props["HttpMethod"])] = Integration("mock", mock=_mock(props))
        else:
            skipped.append(f"{mid}: integration type {kind} is not emulated (answers 501)")
            methods[rid][str(props["HttpMethod"])] = Integration(f"unsupported: {kind}")
    resources = tuple(
        Resource(path="/" + "/".join(paths[rid]), parts=paths[rid], methods=methods[rid]) for rid in paths
    )
    binary = tuple(str(t).replace("~1", "/") for t in template.props(api_id).get("BinaryMediaTypes") or [])
    return Api(
        logical_id=api_id,
        stage=stage_name,
        resources=resources,
        binary_media_types=binary,
        stage_variables={str(k): str(v) for k, v in variables.items()}
        if isinstance(variables, dict)
        else None,
        skipped=tuple(skipped),
    )


def is_binary_type(content_type: str | None, binary_media_types: Sequence[str]) -> bool:
    media = (content_type or "").split(";")[0].strip().lower()
    return bool(media) and any(fnmatch.fnmatch(media, t.lower()) for t in binary_media_types)
