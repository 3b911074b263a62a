"""Runs INSIDE the target interpreter: `python3.X -I -S verify_in_bundle.py PATHS CHECK_JSON RESULT_FILE`.

`-I -S` leaves only the standard library on sys.path; this script adds the bundle's folders (PATHS, joined
with os.pathsep: the bundle's own files, then its dependency layer), together what Lambda's /var/task gives
a handler; the first is the working directory. It imports one handler (one process per handler, as Lambda
does), optionally drives GET <health_path> through it with a Lambda-like context object, then imports the
dependencies the function's code imports lazily (inside functions: init does not prove them), and writes
one JSON object to RESULT_FILE: its own channel, since the handler owns stdout and may print anything there.
That object lists the failures (none: the check passed) and every file of the bundle's own folder the run
read (modules loaded, files opened): a later bundle on the same layer in which all of them are unchanged
needs no new run (verify_cache.py). Standard library only.
"""

import importlib
import json
import os
import sys
import time
import traceback
import types

# What /health may answer in a JSON "status" (case-insensitive); 200 is required in every case.
HEALTHY_STATUSES = ("healthy", "ok", "pass", "up")


def lambda_context(function: str, memory_mb: int, timeout_seconds: int) -> types.SimpleNamespace:
    """The attributes Lambda's context object has, for the function being verified."""
    deadline = time.monotonic() + timeout_seconds
    return types.SimpleNamespace(
        function_name=function,
        function_version="$LATEST",
        invoked_function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:{function}",
        memory_limit_in_mb=str(memory_mb),
        aws_request_id="00000000-0000-0000-0000-000000000000",
        log_group_name=f"/aws/lambda/{function}",
        log_stream_name="2026/01/01/[$LATEST]00000000000000000000000000000000",
        get_remaining_time_in_millis=lambda: max(0, int((deadline - time.monotonic()) * 1000)),
    )


def is_healthy(status: object, body: object) -> bool:
    """200, and a JSON body's "status" (when it has one) is one of HEALTHY_STATUSES."""
    if status != 200:
        return False
    try:
        data = json.loads(body) if isinstance(body, (str, bytes)) and body else None
    except ValueError:
        return True
    if isinstance(data, dict) and "status" in data:
        return str(data["status"]).lower() in HEALTHY_STATUSES
    return True


def health_event(path: str = "/health") -> dict[str, object]:
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": "GET",
        "headers": {"Host": "verify.local", "Accept": "application/json"},
        "multiValueHeaders": {"Host": ["verify.local"], "Accept": ["application/json"]},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": "GET",
            "path": "/prod" + path,
            "stage": "prod",
            "requestId": "verify",
            "accountId": "123456789012",
            "apiId": "verify",
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "credmate-verify"},
        },
        "body": None,
        "isBase64Encoded": False,
    }


def failure(exc: BaseException, **context: str) -> dict[str, object]:
    """What the bundler's hints (verification.hint_for) are chosen from, with `context` (stage, where)."""
    found: dict[str, object] = {
        **context,
        "type": type(exc).__name__,
        "message": str(exc),
        "name": exc.name if isinstance(exc, ImportError) else None,
        "traceback": traceback.format_exc()[-3000:],
    }
    if isinstance(exc, SyntaxError):
        found.update(filename=exc.filename, lineno=exc.lineno)
    return found


def lazy_failures(imports: list[tuple[str, list[str], str]]) -> list[dict[str, object]]:
    """Import each [module, [names], where] as `from module import names` does (a name is an attribute or
    a submodule), or as `import module` without names."""
    failures = []
    for module_name, names, where in imports:
        try:
            module = __import__(module_name, fromlist=names)  # imports the submodules among `names`
            missing = [name for name in names if not hasattr(module, name)]
            if missing:
                raise ImportError(f"cannot import name '{missing[0]}' from '{module_name}'")
        except BaseException as exc:  # an import may raise anything, SystemExit included
            failures.append(failure(exc, stage="lazy", where=str(where), module=str(module_name)))
    return failures


def watch_reads(bundle: str) -> "set[str]":
    """Every file opened from now on (by Python or native code through Python's I/O), as absolute paths."""
    opened: set[str] = set()

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event == "open" and args and isinstance(args[0], (str, bytes)):
            path = os.fsdecode(args[0])
            opened.add(os.path.normpath(os.path.join(bundle, path)))  # relative: the cwd is the bundle

    sys.addaudithook(hook)
    return opened


def bundle_reads(bundle: str, opened: "set[str]") -> "list[str]":
    """The bundle-relative files this run read: each loaded module's file and the .pyc it ran, every file
    opened inside the bundle, and the files mapped into the process (Linux): shared libraries the dynamic
    linker loaded for an extension module (from a wheel's `*.libs/` folder, say) without a Python open."""
    paths = set(opened)
    try:
        with open("/proc/self/maps") as maps:
            paths.update(line.split(None, 5)[5].strip() for line in maps if len(line.split(None, 5)) == 6)
    except OSError:
        pass
    for module in list(sys.modules.values()):
        for attr in ("__file__", "__cached__"):
            value = getattr(module, attr, None)
            if isinstance(value, str):
                paths.add(value)
    # Real paths on both sides: code may reach the bundle through a symlink (Path(__file__).resolve()).
    top = os.path.realpath(bundle) + os.sep
    real = {os.path.realpath(p) for p in paths}
    return sorted(p[len(top) :].replace(os.sep, "/") for p in real if p.startswith(top) and os.path.isfile(p))


def main() -> None:
    paths, check, result_file = sys.argv[1].split(os.pathsep), json.loads(sys.argv[2]), sys.argv[3]
    bundle = paths[0]
    opened = watch_reads(bundle)
    sys.path[0:0] = paths
    stage = "import"
    module_name, _, attr = check["handler"].rpartition(".")
    try:
        module = importlib.import_module(module_name)
        stage = "attribute"
        handler = getattr(module, attr)
        if not callable(handler):
            raise TypeError(f"{check['handler']} is not callable")
        if check.get("http_health"):
            stage = "health"
            path = check.get("health_path") or "/health"
            context = lambda_context(
                check["function"], int(check.get("memory_mb", 1024)), int(check.get("timeout_seconds", 60))
            )
            response = handler(health_event(path), context)
            status = response.get("statusCode") if isinstance(response, dict) else None
            body = response.get("body") if isinstance(response, dict) else None
            if not is_healthy(status, body):
                raise RuntimeError(f"GET {path} returned {status}: {str(body or '')[:300]}")
        failures = lazy_failures(check.get("lazy", []))
    except BaseException as exc:  # a handler may raise anything, SystemExit included
        failures = [failure(exc, stage=stage)]
    with open(result_file, "w") as out:
        json.dump({"failures": failures, "reads": bundle_reads(bundle, opened)}, out)


if __name__ == "__main__":
    main()
