# mypy: allow-untyped-defs, allow-incomplete-defs
"""scripts.local.api and scripts.local.event: the synthesized API and triggers, on the real bundles.

The server runs as its own process on a free loopback port and is called with urllib, as a browser or the
frontend would. Expected values come from the synthesized template and the built bundle, not from constants:
the preflight must answer what the template's MOCK integration says, /health must report the bundle's own
build_info. The pure translation (events, responses, routing) is also tested without a server.
"""

from __future__ import annotations

import base64
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
from harness_bundles import remove_distribution

from scripts.local import api as local_api
from scripts.local import event as local_event
from scripts.local import gateway as local_gateway
from scripts.local import proxy as local_proxy
from scripts.local import routes as local_routes
from scripts.local import stack as local_stack
from scripts.local.postgres import scratch_folder
from tests.local.local_api_server import REPO_ROOT, LocalApiProcess, http, shared_assembly

pytestmark = pytest.mark.harness

STACK = "credmate-backend-staging"
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
def assembly(tmp_path_factory) -> Path:
    return shared_assembly(tmp_path_factory)


@pytest.fixture(scope="module")
def template(assembly) -> Any:
    return local_stack.Template(assembly / f"{STACK}.template.json")


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


# ---------------------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------------------
# The translation, without a server


def _api(binary: tuple[str, ...] = ()) -> Any:
    proxy = local_routes.Integration("proxy", function="Fn")
    return local_routes.Api(
        logical_id="Api",
        stage="v1",
        resources=(
            local_routes.Resource("/", (), {"ANY": proxy}),
            local_routes.Resource("/{proxy+}", ("{proxy+}",), {"ANY": proxy}),
            local_routes.Resource("/items", ("items",), {"GET": proxy}),
            local_routes.Resource("/items/{id}", ("items", "{id}"), {"GET": proxy}),
        ),
        binary_media_types=binary,
        stage_variables={"color": "blue"},
    )


def _request(path: str, body: bytes = b"", headers: list[tuple[str, str]] | None = None) -> Any:
    return local_proxy.Request("POST", path, headers or [], body, "127.0.0.1", "127.0.0.1", 3000)


def test_routing_prefers_literal_then_parameter_then_greedy():
    api = _api()
    assert api.match(("items",))[0].path == "/items"
    resource, params = api.match(("items", "42"))
    assert resource.path == "/items/{id}" and params == {"id": "42"}
    resource, params = api.match(("items", "42", "x"))
    assert resource.path == "/{proxy+}" and params == {"proxy": "items/42/x"}
    assert api.match(())[0].path == "/"


def test_unknown_route_and_method_answer_missing_authentication_token():
    api = _api()
    narrow = local_routes.Api("Api", "v1", (api.resources[2],), (), None)
    no_template: Any = None  # the gateway never reads it on these paths
    gateway = local_gateway.Gateway(
        local_gateway.Deployment(narrow, local_stack.Runtimes({}), no_template), log=lambda _m: None
    )
    for method, path in (("GET", "/v1/elsewhere"), ("DELETE", "/v1/items")):
        answer = gateway.handle(local_proxy.Request(method, path, [], b"", "127.0.0.1", "127.0.0.1", 1))
        assert answer.status == 403
        assert json.loads(answer.body) == {"message": "Missing Authentication Token"}


def test_event_carries_everything_api_gateway_sends():
    api = _api(binary=("image/*",))
    resource, params = api.match(("items", "a%20b"))
    request = _request(
        "/v1/items/a%20b?x=1&x=2&y=",
        body=b"\x89PNG",
        headers=[("Content-Type", "image/png"), ("Cookie", "a=1"), ("Cookie", "b=2")],
    )
    event, notes = local_proxy.proxy_event(api, request, resource, params, "rid")
    assert event["resource"] == "/items/{id}" and event["path"] == "/items/a b"
    assert event["pathParameters"] == {"id": "a b"}
    assert event["queryStringParameters"] == {"x": "2", "y": ""}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"], "y": [""]}
    assert event["headers"]["Cookie"] == "b=2" and event["multiValueHeaders"]["Cookie"] == ["a=1", "b=2"]
    assert event["stageVariables"] == {"color": "blue"}
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\x89PNG"
    context = event["requestContext"]
    assert context["stage"] == "v1" and context["path"] == "/v1/items/a b"
    assert context["resourcePath"] == "/items/{id}" and context["requestId"] == "rid"
    assert context["identity"]["sourceIp"] == "127.0.0.1" and context["httpMethod"] == "POST"
    assert not notes  # a binary media type: nothing API Gateway would do differently

    root = api.match(())
    assert root is not None
    top, no_params = root
    text, _ = local_proxy.proxy_event(api, _request("/v1/", body="é".encode()), top, no_params, "r")
    assert text["body"] == "é" and text["isBase64Encoded"] is False and text["pathParameters"] is None
    assert text["queryStringParameters"] is None
    undecodable, notes = local_proxy.proxy_event(api, _request("/v1/", body=b"\xff"), top, no_params, "r")
    assert undecodable["isBase64Encoded"] is True and notes


def test_proxy_responses_as_api_gateway_reads_them():
    api, request = _api(), _request("/v1/")
    response, why = local_proxy.proxy_response(
        {
            "statusCode": 201,
            "headers": {"X-One": "1", "X-Both": "single"},
            "multiValueHeaders": {"X-Both": ["m1", "m2"]},
            "body": base64.b64encode(b"\x00\x01").decode(),
            "isBase64Encoded": True,
        },
        request,
        api,
        "rid",
    )
    assert why is None and response is not None
    assert response.status == 201 and response.body == b"\x00\x01"
    assert ("X-One", "1") in response.headers
    assert [v for k, v in response.headers if k == "X-Both"] == ["m1", "m2"]
    assert ("Content-Type", "application/json") in response.headers  # API Gateway's default
    assert response.notes  # no binary media type: API Gateway would have returned the base64 text
    for malformed in (
        ["not", "an", "object"],
        {"statusCode": 200, "body": {"not": "a string"}},
        {"statusCode": 200, "unexpected": 1},
        {"body": "no status"},
    ):
        assert local_proxy.proxy_response(malformed, request, api, "rid")[0] is None, malformed


def test_environment_placeholders_name_the_unresolvable_intrinsic(template):
    for function in template.of_type("AWS::Lambda::Function"):
        variables = template.props(function).get("Environment", {}).get("Variables", {})
        env, unresolved = local_stack.function_environment(template, function)
        for name, raw in variables.items():
            if isinstance(raw, str):
                assert env[name] == raw
            elif template.resolve(raw) is None:
                assert env[name].startswith(local_stack.UNRESOLVED)
                assert any(item.startswith(f"{name} ") for item in unresolved)
                refs = local_stack.referenced_ids(raw)
                assert all(ref in env[name] for ref in refs)


# ---------------------------------------------------------------------------------------------------------
# Any template: two functions on their own routes, reached through an alias and through Fn::Sub

TWO_FUNCTIONS = {
    "Resources": {
        "Api": {"Type": "AWS::ApiGateway::RestApi", "Properties": {"BinaryMediaTypes": ["image~1png"]}},
        "Stage": {
            "Type": "AWS::ApiGateway::Stage",
            "Properties": {"RestApiId": {"Ref": "Api"}, "StageName": "prod", "Variables": {"tier": "gold"}},
        },
        "A": {
            "Type": "AWS::ApiGateway::Resource",
            "Properties": {
                "RestApiId": {"Ref": "Api"},
                "ParentId": {"Fn::GetAtt": ["Api", "RootResourceId"]},
                "PathPart": "a",
            },
        },
        "B": {
            "Type": "AWS::ApiGateway::Resource",
            "Properties": {
                "RestApiId": {"Ref": "Api"},
                "ParentId": {"Fn::GetAtt": ["Api", "RootResourceId"]},
                "PathPart": "b",
            },
        },
        "BId": {
            "Type": "AWS::ApiGateway::Resource",
            "Properties": {"RestApiId": {"Ref": "Api"}, "ParentId": {"Ref": "B"}, "PathPart": "{id}"},
        },
        "AGet": {
            "Type": "AWS::ApiGateway::Method",
            "Properties": {
                "RestApiId": {"Ref": "Api"},
                "ResourceId": {"Ref": "A"},
                "HttpMethod": "GET",
                "Integration": {
                    "Type": "AWS_PROXY",
                    "Uri": {
                        "Fn::Join": [
                            "",
                            [
                                "arn:aws:apigateway:",
                                {"Ref": "AWS::Region"},
                                ":lambda:path/2015-03-31/functions/",
                                {"Ref": "FnAAlias"},
                                "/invocations",
                            ],
                        ]
                    },
                },
            },
        },
        "BIdAny": {
            "Type": "AWS::ApiGateway::Method",
            "Properties": {
                "RestApiId": {"Ref": "Api"},
                "ResourceId": {"Ref": "BId"},
                "HttpMethod": "ANY",
                "Integration": {
                    "Type": "AWS_PROXY",
                    "Uri": {
                        "Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/"
                        "functions/${FnB.Arn}/invocations"
                    },
                },
            },
        },
        "FnAAlias": {
            "Type": "AWS::Lambda::Alias",
            "Properties": {"FunctionName": {"Ref": "FnA"}, "Name": "live"},
        },
        "Queue": {"Type": "AWS::SQS::Queue", "Properties": {}},
        "FnA": {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "Handler": "app.handler",
                "Runtime": "python3.11",
                "Timeout": 10,
                "Code": {"S3Bucket": "b", "S3Key": "aaaa.zip"},
                "Environment": {
                    "Variables": {
                        "GREETING": "hi",
                        "QUEUE_URL": {"Ref": "Queue"},
                        "ENDPOINT": {
                            "Fn::Join": ["", ["https://sqs.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]
                        },
                    }
                },
            },
            "Metadata": {"aws:cdk:path": "Two/FnA/Resource", "aws:asset:path": "asset.aaaa"},
        },
        "FnB": {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "Handler": "app.handler",
                "Runtime": "python3.11",
                "Timeout": 10,
                "Code": {"S3Bucket": "b", "S3Key": "bbbb.zip"},
            },
            "Metadata": {"aws:cdk:path": "Two/FnB/Resource", "aws:asset:path": "asset.bbbb.zip"},
        },
    }
}

FN_A = """
import json, os

def handler(event, context):
    env = {k: os.environ[k] for k in ("GREETING", "QUEUE_URL", "ENDPOINT")}
    return {"statusCode": 200, "body": json.dumps({"function": "A", "env": env, "event": event})}
"""

FN_B = """
def handler(event, context):
    which = event["pathParameters"]["id"]
    if which == "raise":
        raise RuntimeError("handler blew up")
    if which == "malformed":
        return {"status": 200}
    return {"statusCode": 200, "headers": {"Content-Type": "image/png"}, "body": event["body"],
            "isBase64Encoded": event["isBase64Encoded"]}
"""


def test_any_template_routes_each_function_with_its_code_and_environment(tmp_path):
    out = tmp_path / "cdk.out"
    (out / "asset.aaaa").mkdir(parents=True)
    (out / "asset.aaaa" / "app.py").write_text(FN_A)
    import zipfile

    with zipfile.ZipFile(out / "asset.bbbb.zip", "w") as archive:
        archive.writestr("app.py", FN_B)
    (out / "Two.template.json").write_text(json.dumps(TWO_FUNCTIONS))
    options = local_api.Options(
        stack="Two", outdir=out, context={}, api=None, code=(), env={}, cache_dir=tmp_path / "cache"
    )
    lines: list[str] = []
    deployment = local_api.load_deployment(options, log=lines.append)
    gateway = local_gateway.Gateway(deployment, log=lines.append)
    assert deployment.api.functions == {"FnA", "FnB"}
    try:
        a = gateway.handle(local_proxy.Request("GET", "/prod/a?x=1", [], b"", "127.0.0.1", "127.0.0.1", 1))
        body = json.loads(a.body)
        assert a.status == 200 and body["function"] == "A"
        assert body["env"]["GREETING"] == "hi"
        assert body["env"]["ENDPOINT"] == f"https://sqs.{local_stack.LOCAL_REGION}.amazonaws.com"
        assert (
            body["env"]["QUEUE_URL"].startswith(local_stack.UNRESOLVED)
            and "Queue" in body["env"]["QUEUE_URL"]
        )
        assert any("QUEUE_URL" in line and "placeholder" in line for line in lines)
        event = body["event"]
        assert event["resource"] == "/a" and event["stageVariables"] == {"tier": "gold"}
        assert event["requestContext"]["stage"] == "prod" and event["queryStringParameters"] == {"x": "1"}
        # A POST to /a has no method: API Gateway's 403, not the function.
        post_a = gateway.handle(local_proxy.Request("POST", "/prod/a", [], b"", "127.0.0.1", "127.0.0.1", 1))
        assert post_a.status == 403

        png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
        headers = [("Content-Type", "image/png"), ("Accept", "image/png")]
        b = gateway.handle(
            local_proxy.Request("PUT", "/prod/b/img", headers, png, "127.0.0.1", "127.0.0.1", 1)
        )
        assert b.status == 200 and b.body == png and not b.notes  # image/png is a binary media type
        assert (
            tmp_path / "cache" / "local-api" / "assets" / "bbbb" / "code" / "app.py"
        ).is_file()  # unzipped once

        for which in ("raise", "malformed"):
            bad = gateway.handle(local_proxy.Request("GET", f"/prod/b/{which}", [], b"", "127.0.0.1", "h", 1))
            assert bad.status == 502 and json.loads(bad.body) == {"message": "Internal server error"}
        log = "\n".join(lines)
        assert "handler blew up" in log and "malformed Lambda proxy response" in log
        request_lines = [line for line in lines if line.startswith("[local-api] ") and " ms" in line]
        assert any(line.startswith("[local-api] GET /prod/a 200 ") and "FnA cold" in line for line in lines)
        assert any("PUT /prod/b/img 200" in line and "FnB cold" in line for line in request_lines)
        assert any("GET /prod/b/raise 502" in line and "FnB warm" in line for line in request_lines)
    finally:
        deployment.runtimes.stop()
