"""Serve a synthesized environment's REST API on 127.0.0.1, each route running its real bundle. No Docker.

    python -m scripts.local.api [--env staging] [--port 3000] [--watch] [-c backend_root=PATH]
    make local-api [ENV=staging] [PORT=3000] [WATCH=1]

What API Gateway would do, read from `cdk.out/<stack>.template.json` (synthesized first, as `make synth`
does, unless --no-synth): the stage prefix (`/v1`), the resource tree (`{proxy+}`, `{param}`, literal
paths) and methods (ANY or one verb), which Lambda function each AWS_PROXY integration invokes (through its
alias or version), MOCK integrations (the CORS preflight: status and header values of the integration
response, with CDK's multi-origin override template), BinaryMediaTypes and stage variables. Each request
becomes the REST proxy event API Gateway sends, goes to the function's built bundle under AWS's Lambda
Runtime Interface Emulator and awslambdaric (one warm runtime per function), and the proxy response comes
back as API Gateway returns it. A function error or a malformed proxy response answers 502
{"message": "Internal server error"}, an unknown route 403 {"message": "Missing Authentication Token"}, a
path outside the stage 403 {"message": "Forbidden"}, an integration running past 29 s 504.

The database, by default: DATABASE_URL when set (or --database-url), else a local PostgreSQL whose data
persists in .cache/local-postgres/<env>/ (scripts/local/database.py; `make clean` removes it), migrated to
head with the deploy's own runner before the first request. The functions get its DATABASE_URL and a
JWT_SECRET for this run (unless --set-env gives them). `make local-user EMAIL=.. PASSWORD=..` creates a
user that can log in. --no-database serves without one (every login then answers 401). Ctrl-C stops the
emulators and the PostgreSQL server this started.

--watch polls the backend's source (and cdk.json, requirements) for changes. A source edit is rebuilt by
the bundler directly and served by new runtimes, usually within a second (scripts/local/edit_loop.py: a bundle
that fails answers its error, never the previous code); any other change synthesizes again, and a synth
that fails keeps the previous deployment serving.

Deliberate differences from API Gateway: a request body that is not UTF-8 is sent base64-encoded even when
its Content-Type is not a binary media type (the log says API Gateway would corrupt it), and a base64
response body is always decoded (the log says when API Gateway would return the base64 text instead).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fnmatch
import json
import os
import re
import secrets
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from scripts.local.database import DEFAULT_ROOT, local_database, migrate
from scripts.local.edit_loop import EditLoop, source_only
from scripts.local.postgres import PostgresError
from scripts.local.stack import (
    DEFAULT_CACHE,
    LOCAL_ACCOUNT,
    REPO_ROOT,
    HarnessError,
    LocalFunction,
    LocalStackError,
    Log,
    Runtimes,
    Template,
    backend_root,
    load_functions,
    override_code,
    parse_context,
    parse_env,
    referenced_ids,
    stderr_log,
    synthesize,
)

INTEGRATION_TIMEOUT_S = 29.0
PROXY_RESPONSE_KEYS = frozenset({"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"})
LOOPBACK = "127.0.0.1"


# ---------------------------------------------------------------------------------------------------------
# The API, from the template


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


# ---------------------------------------------------------------------------------------------------------
# Requests and responses


@dataclass(frozen=True)
class Request:
    method: str
    raw_path: str  # as received, with the stage and query string
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str
    host: str
    port: int


@dataclass(frozen=True)
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    notes: tuple[str, ...] = ()


def _json_response(status: int, message: str, request_id: str) -> Response:
    body = json.dumps({"message": message}).encode()
    return Response(status, [("Content-Type", "application/json"), ("x-amzn-RequestId", request_id)], body)


def _multi(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in pairs:
        out.setdefault(key, []).append(value)
    return out


def proxy_event(
    api: Api, request: Request, resource: Resource, params: Mapping[str, str], request_id: str
) -> tuple[dict[str, Any], list[str]]:
    """The REST API (v1) proxy event API Gateway sends for this request, and notes for the log."""
    notes: list[str] = []
    split = urllib.parse.urlsplit(request.raw_path)
    stage_prefix = f"/{api.stage}"
    path = urllib.parse.unquote(split.path[len(stage_prefix) :] or "/")
    headers = [(k, v) for k, v in request.headers]
    headers += [
        ("X-Forwarded-For", request.source_ip),
        ("X-Forwarded-Port", str(request.port)),
        ("X-Forwarded-Proto", "http"),
    ]
    multi_headers = _multi(headers)
    query = urllib.parse.parse_qsl(split.query, keep_blank_values=True)
    multi_query = _multi(query)
    content_type = next((v for k, v in headers if k.lower() == "content-type"), None)
    body: str | None = None
    is_base64 = False
    if request.body:
        if is_binary_type(content_type, api.binary_media_types):
            body, is_base64 = base64.b64encode(request.body).decode(), True
        else:
            try:
                body = request.body.decode("utf-8")
            except UnicodeDecodeError:
                body, is_base64 = base64.b64encode(request.body).decode(), True
                notes.append(
                    f"request body is not UTF-8 and Content-Type {content_type!r} is not in the API's "
                    f"BinaryMediaTypes {list(api.binary_media_types)}: sent base64-encoded here, API Gateway "
                    "would corrupt it"
                )
    now = datetime.now(UTC)
    user_agent = next((v for k, v in headers if k.lower() == "user-agent"), None)
    event = {
        "resource": resource.path,
        "path": path,
        "httpMethod": request.method,
        "headers": {k: v[-1] for k, v in multi_headers.items()} or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": {k: urllib.parse.unquote(v) for k, v in params.items()} or None,
        "stageVariables": api.stage_variables or None,
        "requestContext": {
            "resourceId": "local",
            "resourcePath": resource.path,
            "httpMethod": request.method,
            "extendedRequestId": request_id,
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "path": urllib.parse.unquote(split.path),
            "accountId": LOCAL_ACCOUNT,
            "protocol": "HTTP/1.1",
            "stage": api.stage,
            "domainPrefix": request.host.split(".")[0],
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": request.source_ip,
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": user_agent,
                "user": None,
            },
            "domainName": request.host,
            "apiId": api.logical_id,
        },
        "body": body,
        "isBase64Encoded": is_base64,
    }
    return event, notes


def proxy_response(
    payload: Any, request: Request, api: Api, request_id: str
) -> tuple[Response | None, str | None]:
    """API Gateway's answer to a Lambda proxy response; (None, why) when API Gateway calls it malformed."""
    if not isinstance(payload, dict):
        return None, f"the function returned {type(payload).__name__}, not a JSON object"
    extra = set(payload) - PROXY_RESPONSE_KEYS
    if extra:
        return None, f"unexpected keys {sorted(extra)} (allowed: {sorted(PROXY_RESPONSE_KEYS)})"
    status = payload.get("statusCode")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        return None, f"statusCode {status!r} is not an HTTP status code"
    body = payload.get("body")
    if body is not None and not isinstance(body, str):
        return None, f"body is a {type(body).__name__}, not a string"
    single = payload.get("headers") or {}
    multi = payload.get("multiValueHeaders") or {}
    if not isinstance(single, dict) or not isinstance(multi, dict):
        return None, "headers and multiValueHeaders must be objects"
    # API Gateway merges both; for a name in both, multiValueHeaders' values win.
    merged: list[tuple[str, str]] = []
    multi_lower = {k.lower() for k in multi}
    for key, value in single.items():
        if key.lower() not in multi_lower:
            merged.append((key, str(value)))
    for key, values in multi.items():
        for value in values if isinstance(values, list) else [values]:
            merged.append((key, str(value)))
    notes: list[str] = []
    raw = (body or "").encode("utf-8")
    if payload.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(body or "", validate=True)
        except ValueError:
            return None, "isBase64Encoded is true but body is not base64"
        accept = next((v for k, v in request.headers if k.lower() == "accept"), "")
        response_type = next((v for k, v in merged if k.lower() == "content-type"), "")
        if not (
            is_binary_type(accept.split(",")[0], api.binary_media_types)
            or is_binary_type(response_type, api.binary_media_types)
        ):
            notes.append(
                f"base64 response decoded here; API Gateway would return the base64 text, since neither "
                f"Accept {accept!r} nor Content-Type {response_type!r} matches BinaryMediaTypes "
                f"{list(api.binary_media_types)}"
            )
    names = {k.lower() for k, _ in merged}
    if "content-type" not in names:
        merged.append(("Content-Type", "application/json"))
    merged.append(("x-amzn-RequestId", request_id))
    return Response(status, merged, raw, tuple(notes)), None


# ---------------------------------------------------------------------------------------------------------
# The gateway


@dataclass
class Deployment:
    """What serves requests now: swapped whole when --watch rebuilds."""

    api: Api
    runtimes: Runtimes
    template: Template
    failures: dict[str, str] = field(default_factory=dict)  # function -> why it answers 502 (edit_loop.py)
    answered: threading.Event = field(default_factory=threading.Event)  # set once it answered a request


class Gateway:
    def __init__(self, deployment: Deployment, *, log: Log = stderr_log) -> None:
        self.deployment = deployment
        self.log = log
        self._swap = threading.Lock()

    def replace(self, deployment: Deployment) -> None:
        with self._swap:
            old, self.deployment = self.deployment, deployment
        old.runtimes.stop()

    def handle(self, request: Request) -> Response:
        started = time.monotonic()
        request_id = str(uuid.uuid4())
        deployment = self.deployment
        response, label, cold = self._route(deployment, request, request_id)
        deployment.answered.set()
        ms = (time.monotonic() - started) * 1000
        path = urllib.parse.urlsplit(request.raw_path).path
        temperature = "" if label is None else f" {label} {'cold' if cold else 'warm'}"
        self.log(f"[local-api] {request.method} {path} {response.status} {ms:.1f} ms{temperature}")
        for note in response.notes:
            self.log(f"[local-api]   note: {note}")
        return response

    def _route(
        self, deployment: Deployment, request: Request, request_id: str
    ) -> tuple[Response, str | None, bool]:
        api = deployment.api
        path = urllib.parse.urlsplit(request.raw_path).path
        segments = path.split("/")[1:]
        if not segments or segments[0] != api.stage:
            return _json_response(403, "Forbidden", request_id), None, False
        parts = tuple(segments[1:])
        if parts == ("",):
            parts = ()
        matched = api.match(parts)
        if matched is None:
            return _json_response(403, "Missing Authentication Token", request_id), None, False
        resource, params = matched
        integration = resource.methods.get(request.method) or resource.methods.get("ANY")
        if integration is None:
            return _json_response(403, "Missing Authentication Token", request_id), None, False
        if integration.kind == "mock" and integration.mock is not None:
            return self._mock(integration.mock, request, request_id), None, False
        if integration.kind != "proxy" or integration.function is None:
            self.log(f"[local-api] {resource.path} {request.method}: {integration.kind}: not emulated")
            return (
                _json_response(501, f"local-api does not emulate {integration.kind}", request_id),
                None,
                False,
            )
        event, notes = proxy_event(api, request, resource, params, request_id)
        function = deployment.runtimes.function(integration.function)
        failure = deployment.failures.get(integration.function)
        if failure:
            self.log(
                f"[local-api] {function.label}: its bundle failed (API Gateway would never see it): {failure}"
            )
            return _json_response(502, "Internal server error", request_id), function.label, False
        try:
            invocation = deployment.runtimes.invoke(
                integration.function, event, timeout=INTEGRATION_TIMEOUT_S
            )
        except HarnessError as exc:
            self.log(f"[local-api] {function.label}: {exc}")
            if "timed out" in str(exc):
                return _json_response(504, "Endpoint request timed out", request_id), function.label, True
            return _json_response(502, "Internal server error", request_id), function.label, True
        result = invocation.result
        if result.function_error:
            self.log(
                f"[local-api] {function.label}: function error (API Gateway answers 502): "
                f"{json.dumps(result.payload)[:3000]}"
            )
            return _json_response(502, "Internal server error", request_id), function.label, invocation.cold
        response, why = proxy_response(result.payload, request, api, request_id)
        if response is None:
            self.log(
                f"[local-api] {function.label}: malformed Lambda proxy response ({why}); API Gateway answers "
                f"502: {result.raw[:1000]!r}"
            )
            return _json_response(502, "Internal server error", request_id), function.label, invocation.cold
        if notes:
            response = Response(response.status, response.headers, response.body, (*notes, *response.notes))
        return response, function.label, invocation.cold

    def _mock(self, mock: MockResponse, request: Request, request_id: str) -> Response:
        headers = dict(mock.headers)
        origin = next((v for k, v in request.headers if k.lower() == "origin"), "")
        if origin and origin in mock.override_origins:
            headers["Access-Control-Allow-Origin"] = origin
        notes = (
            ("the MOCK response template has text that is not rendered locally",)
            if mock.unsupported_template
            else ()
        )
        pairs = [*headers.items(), ("Content-Type", "application/json"), ("x-amzn-RequestId", request_id)]
        return Response(mock.status, pairs, b"", notes)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # the gateway logs one line per request
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        body = self._read_body()
        host, _, port = (self.headers.get("Host") or f"{LOOPBACK}:{self.server.server_port}").partition(":")
        request = Request(
            method=self.command,
            raw_path=self.path,
            headers=[(k, v) for k, v in self.headers.items() if k.lower() != "content-length" or body],
            body=body,
            source_ip=self.client_address[0],
            host=host,
            port=int(port) if port.isdigit() else self.server.server_port,
        )
        try:
            response = self.server.gateway.handle(request)
        except Exception as exc:  # never drop a connection without an answer
            self.server.gateway.log(f"[local-api] internal error: {type(exc).__name__}: {exc}")
            response = _json_response(500, "local-api internal error", str(uuid.uuid4()))
        self.send_response(response.status)
        for key, value in response.headers:
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    gateway: Gateway


def make_server(gateway: Gateway, port: int) -> _Server:
    server = _Server((LOOPBACK, port), _Handler)
    server.gateway = gateway
    return server


# ---------------------------------------------------------------------------------------------------------
# Loading and watching


@dataclass(frozen=True)
class Options:
    stack: str
    outdir: Path
    context: dict[str, str]
    api: str | None
    code: tuple[str, ...]
    env: dict[str, str]
    cache_dir: Path
    environment: str = "staging"  # the cdk.json environment (what --watch rebuilds without a synth)


def load_deployment(options: Options, *, log: Log = stderr_log) -> Deployment:
    template = Template(options.outdir / f"{options.stack}.template.json")
    api = load_api(template, options.api)
    functions: dict[str, LocalFunction] = load_functions(template, api.functions, options.cache_dir)
    override_code(functions, template, options.code)
    for skipped in api.skipped:
        log(f"[local-api] skipped {skipped}")
    return Deployment(
        api=api, runtimes=Runtimes(functions, extra_env=options.env, log=log), template=template
    )


def describe(deployment: Deployment, base_url: str) -> list[str]:
    api = deployment.api
    lines = []
    for resource in sorted(api.resources, key=lambda r: r.path):
        for method, integration in sorted(resource.methods.items()):
            target = (
                deployment.runtimes.function(integration.function).label
                if integration.function
                else integration.kind.upper()
            )
            lines.append(f"  {method:7} {base_url}{resource.path.rstrip('/') or '/'} -> {target}")
    return lines


def watched_files(options: Options) -> dict[Path, float]:
    root = backend_root(options.context)
    candidates = [REPO_ROOT / "cdk.json", *(root / n for n in ("requirements.txt", "requirements.lock"))]
    files = [p for p in candidates if p.is_file()]
    src = root / "src"
    if src.is_dir():
        files += [p for p in src.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    stamps: dict[Path, float] = {}
    for path in files:
        try:
            stamps[path] = path.stat().st_mtime
        except OSError:
            continue
    return stamps


def watch(gateway: Gateway, options: Options, stop: threading.Event, *, interval: float = 0.02) -> None:
    log = gateway.log
    root = backend_root(options.context)
    log(f"[local-api] watching {root / 'src'} (and requirements, cdk.json) for changes")
    edits = (
        EditLoop(options.context, options.environment, options.cache_dir, log) if not options.code else None
    )
    last = watched_files(options)
    while not stop.wait(interval):
        current = watched_files(options)
        if current == last:
            continue
        changed = sorted({*current.keys() ^ last.keys(), *(p for p in current if last.get(p) != current[p])})
        # Editors write in several steps: wait until the tree is quiet before rebuilding.
        while not stop.wait(interval):
            settled = watched_files(options)
            if settled == current:
                break
            current = settled
        last = current
        shown = ", ".join(
            str(p.relative_to(REPO_ROOT) if p.is_relative_to(REPO_ROOT) else p) for p in changed[:5]
        )
        log(f"[local-api] change detected ({shown}{' ...' if len(changed) > 5 else ''}): rebuilding")
        if edits is not None and source_only(changed, options.context):
            old = gateway.deployment
            served = edits.rebuild(old.runtimes, sorted(old.api.functions), options.env)
            gateway.replace(
                replace(old, runtimes=served.runtimes, failures=served.failures, answered=served.answered)
            )
            continue
        try:
            synthesize(options.outdir, options.context, log=log)
            deployment = load_deployment(options, log=log)
        except LocalStackError as exc:
            log(f"[local-api] rebuild FAILED; still serving the previous bundle:\n{exc}")
            continue
        gateway.replace(deployment)
        if edits is not None:  # the catalog or the requirements may have changed
            edits.close()
            edits = EditLoop(options.context, options.environment, options.cache_dir, log)
        log("[local-api] reloaded: new bundle verified; runtimes restart on their next request")
    if edits is not None:
        edits.close()


# ---------------------------------------------------------------------------------------------------------
# CLI


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--env", dest="environment", default="staging", help="environment name (cdk.json)")
    parser.add_argument("--stack", help="stack to serve (default credmate-backend-<env>)")
    parser.add_argument("--port", type=int, default=3000, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--cdk-out", type=Path, default=REPO_ROOT / "cdk.out", help="cloud assembly folder")
    parser.add_argument("--no-synth", action="store_true", help="serve the assembly as it is")
    parser.add_argument("--watch", action="store_true", help="rebuild and reload when the backend changes")
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--api", help="logical ID of the REST API when the stack has several")
    parser.add_argument(
        "--code",
        action="append",
        default=[],
        metavar="FUNCTION=FOLDER",
        help="run this unzipped bundle instead",
    )
    parser.add_argument(
        "--set-env", action="append", default=[], metavar="NAME=VALUE", help="extra function environment"
    )
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    database = parser.add_mutually_exclusive_group()
    database.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="use this database (default $DATABASE_URL)",
    )
    database.add_argument("--no-database", action="store_true", help="serve without a database")
    parser.add_argument(
        "--data-dir", type=Path, help="local PostgreSQL folder (default .cache/local-postgres/ENV)"
    )
    parser.add_argument("--migrations-dir", default="migrations", help="Alembic scripts, relative to src/")
    return parser.parse_args(argv)


def with_database(
    args: argparse.Namespace, options: Options, resources: contextlib.ExitStack
) -> dict[str, str]:
    """DATABASE_URL (a local server started into `resources`, migrated to head) and a JWT secret."""
    env = dict(options.env)
    env.setdefault("JWT_SECRET", secrets.token_urlsafe(32))  # tokens of this run only
    if args.no_database:
        return env
    folder = args.data_dir or DEFAULT_ROOT / args.environment
    url = env.get("DATABASE_URL") or resources.enter_context(
        local_database(folder, url=args.database_url, log=stderr_log)
    )
    summary = migrate(url, backend_root(options.context) / "src", args.migrations_dir)
    stderr_log(f"[local-db] migrations: {summary['migration']}, at {summary.get('to')}")
    return {**env, "DATABASE_URL": url}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    resources = contextlib.ExitStack()
    try:
        options = Options(
            environment=args.environment,
            stack=args.stack or f"credmate-backend-{args.environment}",
            outdir=args.cdk_out.resolve(),
            context=parse_context(args.context),
            api=args.api,
            code=tuple(args.code),
            env=parse_env(args.set_env),
            cache_dir=args.cache_dir.resolve(),
        )
        if not args.no_synth:
            synthesize(options.outdir, options.context)
        options = replace(options, env=with_database(args, options, resources))
        deployment = load_deployment(options)
    except (LocalStackError, PostgresError) as exc:
        resources.close()
        print(f"local-api: {exc}", file=sys.stderr)
        return 1
    except BaseException:
        resources.close()
        raise
    with resources:
        return serve(args, options, deployment)


def serve(args: argparse.Namespace, options: Options, deployment: Deployment) -> int:
    gateway = Gateway(deployment)
    try:
        server = make_server(gateway, args.port)
    except OSError as exc:
        print(f"local-api: cannot listen on {LOOPBACK}:{args.port}: {exc.strerror}", file=sys.stderr)
        deployment.runtimes.stop()
        return 1
    base = f"http://{LOOPBACK}:{server.server_port}/{deployment.api.stage}"
    stderr_log(
        f"[local-api] {options.stack}: REST API {deployment.api.logical_id}, stage {deployment.api.stage}"
    )
    for line in describe(deployment, base):
        stderr_log(line)
    stop = threading.Event()
    if args.watch:
        threading.Thread(target=watch, args=(gateway, options, stop), daemon=True).start()
    stderr_log(f"[local-api] listening on {base} (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.server_close()
        gateway.deployment.runtimes.stop()
    return 0


def _stop_on_sigterm(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # the same clean shutdown as Ctrl-C: the emulators are stopped


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    sys.exit(main())
