# mypy: allow-untyped-defs, allow-incomplete-defs
"""scripts.local's API Gateway part without a server: routing, the proxy event and response, the
environment's placeholders, and any template's functions each behind their own routes."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from scripts.local import api as local_api
from scripts.local import gateway as local_gateway
from scripts.local import proxy as local_proxy
from scripts.local import routes as local_routes
from scripts.local import stack as local_stack

pytestmark = pytest.mark.harness

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


def test_a_trailing_slash_routes_like_the_path_without_it_and_reaches_the_app():
    api = _api()
    gateway_routes = {"/v1/items/": "/items", "/v1/a/b/": "/{proxy+}", "/v1/": "/"}
    for path, resource_path in gateway_routes.items():
        parts = tuple(path.split("/")[2:])
        parts = parts[:-1] if parts and parts[-1] == "" else parts
        resource, params = api.match(parts)
        assert resource.path == resource_path
        event, _ = local_proxy.proxy_event(api, _request(path), resource, params, "rid")
        assert event["path"] == path.removeprefix("/v1"), "the slash reaches the app (FastAPI routes on it)"
    # AND through the gateway: `/v1/items/` reaches the `/items` resource's integration (a MOCK here)
    mock = local_routes.Integration("mock", mock=local_routes.MockResponse(204, {}, (), False))
    items = local_routes.Api(
        "Api", "v1", (local_routes.Resource("/items", ("items",), {"GET": mock}),), (), None
    )
    no_template: Any = None
    gateway = local_gateway.Gateway(
        local_gateway.Deployment(items, local_stack.Runtimes({}), no_template), log=lambda _m: None
    )
    for path in ("/v1/items", "/v1/items/"):
        answer = gateway.handle(local_proxy.Request("GET", path, [], b"", "127.0.0.1", "127.0.0.1", 1))
        assert answer.status == 204, path


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
