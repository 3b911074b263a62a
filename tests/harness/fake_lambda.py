"""A local stand-in for the Lambda Invoke API: each (function, version) is a real bundle under the RIE.

Point the hook at it with AWS_ENDPOINT_URL_LAMBDA=<service.endpoint>: boto3's `invoke(FunctionName=...,
Qualifier=N)` becomes `POST /2015-03-31/functions/<name>/invocations?Qualifier=N` here, is forwarded to the
emulator registered for that exact version, and the runtime's error document is mapped to the
`X-Amz-Function-Error: Unhandled` header, as Lambda does. Unknown functions or versions (and `$LATEST`,
unless registered) get Lambda's ResourceNotFoundException. Every call is recorded, so a test can prove which
version the hook invoked. Listens on 127.0.0.1 only, on a free port.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from scripts.local.emulator import LambdaEmulator


@dataclass(frozen=True)
class RecordedInvoke:
    function: str
    qualifier: str | None
    event: Any


@dataclass
class FakeLambdaService:
    """Routes (function name, version) to emulators; the function name may also arrive as an ARN."""

    versions: Mapping[tuple[str, str], LambdaEmulator]
    invocations: list[RecordedInvoke] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "service not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeLambdaService:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:
                service._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True, name="fake-lambda").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeLambdaService:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -----------------------------------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        parsed = urllib.parse.urlsplit(request.path)
        parts = parsed.path.split("/")
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        if len(parts) != 5 or parts[1:3] != ["2015-03-31", "functions"] or parts[4] != "invocations":
            return _error(request, 404, "UnknownOperationException", f"no such operation: {parsed.path}")
        name = urllib.parse.unquote(parts[3])
        qualifier = urllib.parse.parse_qs(parsed.query).get("Qualifier", [None])[0]
        # FunctionName may be a name, a `name:qualifier` or an ARN; Lambda accepts all three.
        segments = name.split(":")
        function = segments[6] if name.startswith("arn:") and len(segments) >= 7 else segments[0]
        inline = (
            segments[7]
            if name.startswith("arn:") and len(segments) >= 8
            else (segments[1] if not name.startswith("arn:") and len(segments) == 2 else None)
        )
        version = qualifier or inline or "$LATEST"
        try:
            event: Any = json.loads(body) if body else None
        except ValueError:
            event = body.decode(errors="replace")
        with self._lock:
            self.invocations.append(RecordedInvoke(function, version, event))
        emulator = self.versions.get((function, version))
        if emulator is None:
            return _error(
                request,
                404,
                "ResourceNotFoundException",
                f"Function not found: arn:aws:lambda:us-east-1:000000000000:function:{function}:{version}",
            )
        with self._lock:  # one invocation at a time per service, as the RIE serves one at a time
            result = emulator.invoke(body)
        headers = {"X-Amz-Executed-Version": version, "Content-Type": "application/json"}
        if result.function_error:
            headers["X-Amz-Function-Error"] = "Unhandled"
        _send(
            request,
            200,
            result.raw if result.http_status == 200 else json.dumps(result.payload).encode(),
            headers,
        )


def _send(request: BaseHTTPRequestHandler, status: int, body: bytes, headers: Mapping[str, str]) -> None:
    request.send_response(status)
    for key, value in headers.items():
        request.send_header(key, value)
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    request.wfile.write(body)


def _error(request: BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
    body = json.dumps({"Type": "User", "Message": message, "message": message}).encode()
    _send(request, status, body, {"x-amzn-ErrorType": code, "Content-Type": "application/json"})
