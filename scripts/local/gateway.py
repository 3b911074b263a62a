"""The local gateway: routes each HTTP request of the loopback server to its integration (a function under
the RIE, or a MOCK) and answers as API Gateway would, errors included.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from scripts.local.proxy import Request, Response, _json_response, proxy_event, proxy_response
from scripts.local.routes import Api, MockResponse
from scripts.local.stack import (
    HarnessError,
    Log,
    Runtimes,
    Template,
    stderr_log,
)

INTEGRATION_TIMEOUT_S = 29.0
LOOPBACK = "127.0.0.1"


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
        if parts and parts[-1] == "":
            # API Gateway routes `/items/` as `/items` (FastAPI declares many routes with the slash); the
            # event's path keeps it, so the app sees what the client sent.
            parts = parts[:-1]
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
