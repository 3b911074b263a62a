"""scripts.deploy.smoke_test against local HTTP servers: a healthy API passes, a broken one fails by name."""

from __future__ import annotations

import importlib.util
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "deploy" / "smoke_test.py"
ORIGIN = "https://credentialmate.com"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("smoke_test", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Api(BaseHTTPRequestHandler):
    """A fake API: healthy unless the server's `broken` attribute names what to break."""

    def log_message(self, *_args: object) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: dict[str, object] | None, headers: dict[str, str]) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _cors(self) -> dict[str, str]:
        return {"Access-Control-Allow-Origin": self.headers.get("Origin", "")}

    def do_GET(self) -> None:
        if self.path.endswith("/health") and "health" not in self.server.broken:  # type: ignore[attr-defined]
            self._send(200, {"status": "healthy"}, {"Content-Type": "application/json", **self._cors()})
        else:
            self._send(502, {"message": "Internal server error"}, {"Content-Type": "application/json"})

    def do_OPTIONS(self) -> None:
        self._send(
            204,
            None,
            {
                **self._cors(),
                "Access-Control-Allow-Methods": "GET,POST,PUT,PATCH,DELETE,OPTIONS",
                "Access-Control-Allow-Headers": "Authorization,Content-Type",
            },
        )

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        status = 500 if "login" in self.server.broken else 401  # type: ignore[attr-defined]
        self._send(
            status, {"detail": "Invalid credentials"}, {"Content-Type": "application/json", **self._cors()}
        )


@pytest.fixture
def api() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    server.broken = set()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/v1/"


def test_healthy_api_passes_all_four_checks(api: ThreadingHTTPServer) -> None:
    out = io.StringIO()
    assert _load().run(["--url", _url(api), "--origin", ORIGIN, "--timeout", "10"], out) == 0
    text = out.getvalue()
    for check in ("health", "cors_get", "cors_preflight", "login_rejects_bad_credentials"):
        assert f"PASS {check}" in text
    assert "all checks passed" in text


def test_login_answering_500_fails_by_name(api: ThreadingHTTPServer) -> None:
    api.broken.add("login")  # type: ignore[attr-defined]
    out = io.StringIO()
    assert _load().run(["--url", _url(api), "--timeout", "10"], out) == 1
    assert "FAIL login_rejects_bad_credentials" in out.getvalue()
    assert "PASS health" in out.getvalue()


def test_unreachable_or_bad_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert _load().run(["--url", "api.credentialmate.com"]) == 2
    assert "must be an http(s) URL" in capsys.readouterr().err
    out = io.StringIO()
    # Nothing listens on port 9 of localhost: every check fails with the connection error, none crashes.
    assert _load().run(["--url", "http://127.0.0.1:9/", "--timeout", "3"], out) == 1
    assert "FAIL health" in out.getvalue()
