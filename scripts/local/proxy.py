"""A request as the REST proxy event API Gateway sends, and the function's proxy response as API Gateway
returns it (or why it would answer 502).
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from scripts.local.routes import Api, Resource, is_binary_type
from scripts.local.stack import (
    LOCAL_ACCOUNT,
)

PROXY_RESPONSE_KEYS = frozenset({"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"})


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
