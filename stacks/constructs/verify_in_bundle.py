"""Runs INSIDE the target interpreter, started as `python3.X -I -S verify_in_bundle.py BUNDLE CHECK_JSON`.

`-I -S` leaves only the standard library on sys.path; this script adds the bundle, exactly what Lambda's
/var/task gives a handler. It imports one handler (one process per handler, as Lambda does), optionally
drives GET /health through it, and prints one JSON line. Standard library only.
"""

import importlib
import json
import sys
import traceback


class _Context:
    function_name = "verify"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:verify"
    memory_limit_in_mb = "1024"
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/verify"
    log_stream_name = "verify"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def health_event() -> dict[str, object]:
    return {
        "resource": "/{proxy+}",
        "path": "/health",
        "httpMethod": "GET",
        "headers": {"Host": "verify.local", "Accept": "application/json"},
        "multiValueHeaders": {"Host": ["verify.local"], "Accept": ["application/json"]},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": "health"},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": "GET",
            "path": "/prod/health",
            "stage": "prod",
            "requestId": "verify",
            "accountId": "123456789012",
            "apiId": "verify",
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "credmate-verify"},
        },
        "body": None,
        "isBase64Encoded": False,
    }


def main() -> None:
    bundle, check = sys.argv[1], json.loads(sys.argv[2])
    sys.path.insert(0, bundle)
    result = {"function": check["function"], "handler": check["handler"], "ok": False, "stage": "import"}
    module_name, _, attr = check["handler"].rpartition(".")
    try:
        module = importlib.import_module(module_name)
        result["stage"] = "attribute"
        handler = getattr(module, attr)
        if not callable(handler):
            raise TypeError(f"{check['handler']} is not callable")
        if check.get("http_health"):
            result["stage"] = "health"
            response = handler(health_event(), _Context())
            status = response.get("statusCode") if isinstance(response, dict) else None
            body = response.get("body") if isinstance(response, dict) else None
            result["status_code"] = status
            result["body"] = (body or "")[:500]
            if status != 200 or json.loads(body or "{}").get("status") != "healthy":
                raise RuntimeError(f"GET /health returned {status}: {(body or '')[:300]}")
        result["ok"] = True
    except BaseException as exc:  # a handler may raise anything, SystemExit included
        result["type"] = type(exc).__name__
        result["message"] = str(exc)
        result["name"] = getattr(exc, "name", None)
        if isinstance(exc, SyntaxError):
            result["filename"], result["lineno"] = exc.filename, exc.lineno
        result["traceback"] = traceback.format_exc()[-3000:]
    sys.stdout.write("\n" + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
