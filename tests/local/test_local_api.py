# mypy: allow-untyped-defs, allow-incomplete-defs
"""scripts.local.api and scripts.local.event: the synthesized API and triggers, on the real bundles.

The server runs as its own process on a free loopback port and is called with urllib, as a browser or the
frontend would. Expected values come from the synthesized template and the built bundle, not from constants:
the preflight must answer what the template's MOCK integration says, /health must report the bundle's own
build_info. The pure translation (events, responses, routing) is also tested without a server.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
import signal
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from scripts.local import event as local_event
from scripts.local import stack as local_stack
from scripts.local.postgres import scratch_folder
from tests.harness.harness_bundles import remove_distribution
from tests.local.conftest import STACK
from tests.local.local_api_server import REPO_ROOT, LocalApiProcess, http

pytestmark = pytest.mark.harness

PROBE = REPO_ROOT / "lambda_src" / "probe" / "credmate_probe.py"


def _smoke_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "smoke_test_script", REPO_ROOT / "scripts" / "deploy" / "smoke_test.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def server(assembly, tmp_path_factory) -> Iterator[LocalApiProcess]:
    """The real app as `make local-api` serves it: with its local PostgreSQL (data in a scratch folder)."""
    log = tmp_path_factory.mktemp("local-api") / "server.log"
    data = scratch_folder("credmate-local-api-")
    process = LocalApiProcess(
        ["--no-synth", "--cdk-out", str(assembly), "--stack", STACK, "--data-dir", str(data)], log
    )
    yield process
    process.stop()
    shutil.rmtree(data, ignore_errors=True)


def _proxy_function(template) -> str:
    """The function behind the top-level {proxy+} resource, which serves /health and the login."""
    proxy = next(
        rid
        for rid in template.of_type("AWS::ApiGateway::Resource")
        if template.props(rid)["PathPart"] == "{proxy+}"
    )
    for props in map(template.props, template.of_type("AWS::ApiGateway::Method")):
        if props["ResourceId"] == {"Ref": proxy} and props["Integration"].get("Type") == "AWS_PROXY":
            return template.function_of(props["Integration"]["Uri"])
    raise AssertionError("no AWS_PROXY method on {proxy+}")


def _preflight_settings(template) -> tuple[int, dict[str, str], str]:
    """The MOCK OPTIONS integration of the {proxy+} resource: status, literal headers, response template."""
    proxy = next(
        rid
        for rid in template.of_type("AWS::ApiGateway::Resource")
        if template.props(rid)["PathPart"] == "{proxy+}"
    )
    for props in map(template.props, template.of_type("AWS::ApiGateway::Method")):
        if props["HttpMethod"] == "OPTIONS" and props["ResourceId"] == {"Ref": proxy}:
            response = props["Integration"]["IntegrationResponses"][0]
            headers = {
                k.removeprefix("method.response.header."): v.strip("'")
                for k, v in response["ResponseParameters"].items()
            }
            return int(response["StatusCode"]), headers, response["ResponseTemplates"]["application/json"]
    raise AssertionError("no OPTIONS method on {proxy+}")


# Against the real app


def test_health_returns_the_bundle_versions(server, template):
    function = _proxy_function(template)
    bundle = local_stack.code_location(template, function)[0]
    build_info = json.loads((bundle / "build_info.json").read_text())
    first = http("GET", f"{server.url}/health")
    second = http("GET", f"{server.url}/health")
    assert first.status == second.status == 200
    body = first.json()
    assert body["status"] == "healthy"
    assert body["code_version"] == build_info["code_version"]
    assert body["schema_head"] == build_info["schema_head"]
    assert first.headers["x-amzn-requestid"]
    label = template.cdk_path(function).split("/")[0]
    log = server.wait_for_log(lambda t: t.count("GET /v1/health 200") >= 2, 10, "two /health lines")
    lines = [ln for ln in log.splitlines() if "GET /v1/health 200" in ln]
    assert lines[0].endswith(f"{label} cold") and lines[1].endswith(f"{label} warm"), lines
    assert " ms " in lines[1]


def test_preflight_answers_what_the_template_configures(server, template):
    status, headers, response_template = _preflight_settings(template)
    static_origin = headers["Access-Control-Allow-Origin"]
    answer = http("OPTIONS", f"{server.url}/api/v1/auth/login", headers={"Origin": static_origin})
    assert answer.status == status
    for name, value in headers.items():
        assert answer.headers[name.lower()] == value
    # CDK's template for several origins echoes any other allowed origin; unknown origins get the static one.
    staging = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]["environments"]["staging"]
    others = [o for o in staging["cors_origins"] if o != static_origin]
    for origin in others:
        assert f'"{origin}"' in response_template
        echoed = http("OPTIONS", f"{server.url}/api/v1/auth/login", headers={"Origin": origin})
        assert echoed.headers["access-control-allow-origin"] == origin
    stranger = http("OPTIONS", f"{server.url}/health", headers={"Origin": "https://evil.example"})
    assert stranger.headers["access-control-allow-origin"] == static_origin


def test_bad_login_is_401(server):
    answer = http(
        "POST",
        f"{server.url}/api/v1/auth/login",
        body=json.dumps({"email": "nobody@example.com", "password": "wrong"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status == 401, answer.body


def test_chunked_request_body_reaches_the_function(server):
    connection = HTTPConnection(server.url.split("/")[2], timeout=60)
    try:
        body = iter([b'{"email": "nobody@example.com", ', b'"password": "wrong"}'])
        connection.request(
            "POST",
            "/" + server.url.split("/", 3)[3] + "/api/v1/auth/login",
            body=body,
            headers={"Content-Type": "application/json"},
            encode_chunked=True,
        )
        response = connection.getresponse()
        assert response.status == 401, response.read()  # 422 if the body had not arrived whole
    finally:
        connection.close()


def test_outside_the_stage_is_forbidden_like_api_gateway(server):
    base = server.url.rsplit("/", 1)[0]
    answer = http("GET", f"{base}/not-the-stage/health")
    assert answer.status == 403
    assert answer.json() == {"message": "Forbidden"}


def test_smoke_test_passes_against_local_api(server):
    out = io.StringIO()
    assert _smoke_module().run(["--url", server.url], out=out) == 0, out.getvalue()
    assert "all checks passed" in out.getvalue()


def login(url: str, email: str, password: str) -> Any:
    return http(
        "POST",
        f"{url}/api/v1/auth/login",
        body=json.dumps({"email": email, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )


def test_a_local_user_logs_in_and_the_data_survives_a_restart(assembly, tmp_path):
    """`make local-api`, then the documented `make local-user` step, then a real HTTP client: a token for
    the right password, 401 for a wrong one; Ctrl-C stops the PostgreSQL it started; a second start finds
    the user still there."""
    from scripts.local import database as local_database
    from scripts.local import user as local_user

    data = scratch_folder("credmate-local-user-")
    args = ["--no-synth", "--cdk-out", str(assembly), "--stack", STACK, "--data-dir", str(data)]
    try:
        first = LocalApiProcess(args, tmp_path / "first.log")
        try:
            assert "[local-db] migrations: upgraded" in first.log()
            running = local_database.running_url(data)
            assert running and running.startswith("postgresql://credmate:")
            # The documented step, against the running server (it reuses it: one server per data folder).
            assert (
                local_user.main(
                    ["--email", "Dr.Who@example.com", "--password", "tardis-1963", "--data-dir", str(data)]
                )
                == 0
            )
            answer = login(first.url, "dr.who@example.com", "tardis-1963")
            assert answer.status == 200, answer.body
            token = answer.json()
            assert token["token_type"] == "bearer" and token["access_token"].count(".") == 2
            assert login(first.url, "dr.who@example.com", "wrong").status == 401
            out = io.StringIO()
            assert _smoke_module().run(["--url", first.url], out=out) == 0, out.getvalue()
            pid = json.loads((data / "running.json").read_text())["pid"]
            first.process.send_signal(signal.SIGINT)  # Ctrl-C
            first.process.wait(timeout=30)
            assert "[local-db] PostgreSQL stopped" in first.log()
            assert not (data / "running.json").exists() and not local_database._alive(pid)
        finally:
            first.stop()
        second = LocalApiProcess(args, tmp_path / "second.log")
        try:
            assert "[local-db] migrations: up-to-date" in second.log()
            assert login(second.url, "dr.who@example.com", "tardis-1963").status == 200
        finally:
            second.stop()
    finally:
        shutil.rmtree(data, ignore_errors=True)


def test_local_user_refuses_bad_input(capsys):
    from scripts.local import user as local_user

    assert local_user.main(["--email", "not-an-address", "--password", "x"]) == 2
    assert "is not an email address" in capsys.readouterr().err
    assert local_user.main(["--email", "a@example.com", "--password", ""]) == 2


def test_smoke_test_refuses_plain_http_to_other_hosts():
    assert _smoke_module().run(["--url", "http://api.credentialmate.com/v1"]) == 2


def test_broken_bundle_answers_502_and_logs_the_import_error(assembly, template, tmp_path):
    function = _proxy_function(template)
    broken = tmp_path / "broken"
    for folder in reversed(local_stack.code_location(template, function)):  # the bundle's own files win
        # hard links: fast, read-only use
        shutil.copytree(folder, broken, symlinks=True, copy_function=os.link, dirs_exist_ok=True)
    remove_distribution(broken, "mangum")
    label = template.cdk_path(function).split("/")[0]
    process = LocalApiProcess(
        [
            "--no-synth",
            "--cdk-out",
            str(assembly),
            "--stack",
            STACK,
            "--code",
            f"{label}={broken}",
            "--no-database",
        ],
        tmp_path / "server.log",
    )
    try:
        answer = http("GET", f"{process.url}/health")
        log = process.wait_for_log(lambda t: "GET /v1/health 502" in t, 10, "the 502 line")
    finally:
        process.stop()
    assert answer.status == 502
    assert answer.json() == {"message": "Internal server error"}
    assert "Runtime.ImportModuleError" in log
    assert "No module named 'mangum'" in log


def test_sqs_and_schedule_events_reach_the_function(assembly, template, tmp_path):
    """Each trigger's event, delivered to a bundle whose handler returns what it received."""
    for kind, kind_name in (("sqs", "AWS::Lambda::EventSourceMapping"), ("schedule", "AWS::Events::Rule")):
        targets = (
            [template.function_of(template.props(m)["FunctionName"]) for m in template.of_type(kind_name)]
            if kind == "sqs"
            else [
                template.function_of(t["Arn"])
                for r in template.of_type(kind_name)
                if "ScheduleExpression" in template.props(r)
                for t in template.props(r)["Targets"]
            ]
        )
        function = next(
            f for f in targets if f and template.props(f).get("Handler") == "credmate_probe.handler"
        )
        env = template.props(function)["Environment"]["Variables"]
        module = env["CREDMATE_REAL_HANDLER"].rpartition(".")[0]
        echo = tmp_path / f"echo-{kind}"
        echo.mkdir()
        shutil.copyfile(PROBE, echo / "credmate_probe.py")
        (echo / f"{module}.py").write_text(
            "import os\n\ndef lambda_handler(event, context):\n"
            "    return {'event': event, 'label': os.environ.get('CREDMATE_FUNCTION_LABEL')}\n"
        )
        label = template.cdk_path(function).split("/")[0]
        out = io.StringIO()
        args = ["--no-synth", "--cdk-out", str(assembly), "--stack", STACK, "--function", label]
        args += ["--kind", kind, "--code", f"{label}={echo}", "--body", json.dumps({"n": 1})]
        saved, sys.stdout = sys.stdout, out
        try:
            assert local_event.main(args) == 0
        finally:
            sys.stdout = saved
        received = json.loads(out.getvalue())["event"]
        if kind == "sqs":
            (record,) = received["Records"]
            assert record["eventSource"] == "aws:sqs" and record["body"] == '{"n": 1}'
            assert record["messageId"] and record["receiptHandle"]
            assert record["attributes"]["ApproximateReceiveCount"] == "1"
            assert record["eventSourceARN"].startswith("arn:aws:sqs:")
        else:
            assert received["detail-type"] == "Scheduled Event" and received["source"] == "aws.events"
            assert received["detail"] == {"n": 1}
            assert (
                received["resources"][0].startswith("arn:aws:events:")
                and ":rule/" in received["resources"][0]
            )


def test_local_event_refuses_a_function_the_trigger_does_not_invoke(assembly, template):
    api_function = _proxy_function(template)
    label = template.cdk_path(api_function).split("/")[0]
    args = ["--no-synth", "--cdk-out", str(assembly), "--stack", STACK, "--function", label, "--kind", "sqs"]
    assert local_event.main(args) == 2


# Watch mode and binary bodies, on a small backend copied to tmp

ECHO_HANDLER = """
from fastapi import FastAPI, Request, Response
from mangum import Mangum

app = FastAPI()


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "healthy"}


@app.get("/greeting")
def greeting() -> dict[str, str]:
    return {"greeting": "GREETING"}


@app.post("/echo")
async def echo(request: Request) -> Response:
    return Response(await request.body(), media_type=request.headers.get("content-type"))


lambda_handler = Mangum(app, lifespan="off")
"""


def test_binary_round_trip_and_watch_rebuilds_on_a_source_edit(mini_backend, tmp_path):
    zygotes_before = set(Path(tempfile.gettempdir()).glob("credmate-zygote-*"))
    handler = mini_backend / "src" / "handler.py"
    handler.write_text(textwrap.dedent(ECHO_HANDLER).replace("GREETING", "hello"))
    process = LocalApiProcess(
        [
            "--watch",
            "--cdk-out",
            str(tmp_path / "cdk.out"),
            "-c",
            f"backend_root={mini_backend}",
            "--no-database",
        ],
        tmp_path / "server.log",
    )
    try:
        payload = bytes(range(256)) * 4  # not UTF-8: goes base64 both ways
        echoed = http("POST", f"{process.url}/echo", body=payload,
                      headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        assert echoed.status == 200
        assert echoed.body == payload
        assert http("GET", f"{process.url}/greeting").json() == {"greeting": "hello"}

        time.sleep(1.1)  # a coarse-mtime filesystem must see the edit as a change
        handler.write_text(textwrap.dedent(ECHO_HANDLER).replace("GREETING", "bonjour"))
        process.wait_for_log(lambda t: "reloaded" in t, 240, "a reload after the edit")
        assert http("GET", f"{process.url}/greeting").json() == {"greeting": "bonjour"}

        assert process.log().count("[local] synthesized") == 1, "a source edit is rebuilt without a synth"

        # A source the bundler refuses is shown, and answered as an error: never the previous code
        handler.write_text("import module_that_does_not_exist\n" + textwrap.dedent(ECHO_HANDLER))
        log = process.wait_for_log(lambda t: "rebuild FAILED" in t, 240, "a failed rebuild")
        assert "module_that_does_not_exist" in log
        assert http("GET", f"{process.url}/greeting").status == 502

        # A handler that fails only when it runs: the request fails, and so does the verification, shown
        handler.write_text(textwrap.dedent(ECHO_HANDLER) + "\nraise RuntimeError('settings missing')\n")
        process.wait_for_log(lambda t: t.count("reloaded") >= 2, 240, "a reload after the fix")
        assert http("GET", f"{process.url}/greeting").status == 502
        log = process.wait_for_log(lambda t: "FAILED verification" in t, 240, "the verification's failure")
        assert "RuntimeError: settings missing" in log
    finally:
        process.stop()
    # AND the warm runtime it forked the edited code's runtimes from ended with it, leaving nothing behind
    time.sleep(0.5)
    assert not [p for p in Path("/proc").glob("[0-9]*/cmdline") if _is_zygote(p)]
    assert not [p for p in zygotes_before ^ set(Path(tempfile.gettempdir()).glob("credmate-zygote-*"))]


def _is_zygote(cmdline: Path) -> bool:
    try:
        zygote = REPO_ROOT / "scripts" / "local" / "zygote.py"
        return str(zygote) in cmdline.read_bytes().decode(errors="replace")
    except OSError:
        return False


def test_watch_sees_the_manifest_and_its_local_packages_and_resynthesizes_for_them(tmp_path, shared_cache):
    from types import SimpleNamespace

    from scripts.local.api import Options, watched_files, watched_inputs
    from scripts.local.edit_loop import source_only
    from tests.test_manifests import _spec as spec_of

    # GIVEN a backend whose requirements.txt installs a local package (-e ./libs/common)
    backend = tmp_path / "backend"
    shutil.copytree(REPO_ROOT / "tests" / "fixtures" / "editable_backend", backend)
    context = {"backend_root": str(backend)}
    options = Options("s", tmp_path, context, None, (), {}, shared_cache)
    edits = SimpleNamespace(spec=spec_of(backend, shared_cache))
    inputs = watched_inputs(options, edits)  # type: ignore[arg-type]
    before = watched_files(options, inputs)
    # WHEN the local package's source and the manifest change
    module = backend / "libs" / "common" / "credmate_common" / "__init__.py"
    module.write_text(module.read_text() + "\nEXTRA = 1\n")
    os.utime(module, (before[module] + 5,) * 2)
    requirements = backend / "requirements.txt"
    os.utime(requirements, (before[requirements] + 5,) * 2)
    after = watched_files(options, inputs)
    changed = [p for p in after if after[p] != before.get(p)]
    # THEN both are seen, and neither is a source-only edit: the bundle's dependencies are rebuilt
    assert set(changed) == {module, requirements}
    assert not source_only(changed, context, inputs)
