"""Fakes for the hook tests: Stubber-backed AWS clients (no network), a fake clock, a Lambda context.

CodeDeploy is always faked with botocore's Stubber: moto 5.2.5 lacks PutLifecycleEventHookExecutionStatus.
Use it as a pytest plugin (`pytest_plugins = ["hook_fakes"]`) for its fixtures. Importing it puts the hook
asset (lambda_src/hooks) and the probe (lambda_src/probe) on sys.path, as Lambda's /var/task would, and
re-exports the hook modules, so test modules import them from here whatever the import order.
(No conftest.py here: several conftest.py files are one module name too many for mypy.)
PYTEST_DONT_REWRITE: test modules import this before pytest loads it as a plugin; it asserts nothing.
"""

from __future__ import annotations

import io
import json
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

REPO_ROOT = Path(__file__).resolve().parents[2]
for _path in (REPO_ROOT / "lambda_src" / "hooks", REPO_ROOT / "lambda_src" / "probe"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

# `import x as x`: explicit re-exports for the test modules.
import hook_calls as hook_calls  # noqa: E402
import hook_checks as hook_checks  # noqa: E402
import hook_report as hook_report  # noqa: E402
import hook_target as hook_target  # noqa: E402
import post_traffic as post_traffic  # noqa: E402
import pre_traffic as pre_traffic  # noqa: E402

# The real factory, before any fixture replaces it: the loopback tests make real clients.
REAL_CLIENT = hook_calls.client

DEPLOYMENT_ID = "d-CANARY123"
EXECUTION_ID = "exec-0001"
FUNCTION = "credmate-staging-BackendApiFunction-AbC123"
REGION = "us-east-1"
HOOK_EVENT = {"DeploymentId": DEPLOYMENT_ID, "LifecycleEventHookExecutionId": EXECUTION_ID}


def version_arn(version: str, function: str = FUNCTION) -> str:
    return f"arn:aws:lambda:{REGION}:123456789012:function:{function}:{version}"


def appspec_yaml(
    target: str,
    current: str = "6",
    name: str = FUNCTION,
    alias: str = "live",
    *,
    other_alias: str | None = None,
) -> str:
    """A Lambda deployment's AppSpec: one function resource, as CodeDeploy writes it. `other_alias` adds a
    second resource (another function) with that alias, as no real Lambda deployment has."""
    other = (
        f"""  - OtherFunction:
      Type: AWS::Lambda::Function
      Properties:
        Name: credmate-staging-WorkerFunction-Zz9
        Alias: {other_alias}
        CurrentVersion: "40"
        TargetVersion: "41"
"""
        if other_alias
        else ""
    )
    return f"""version: 0.0
Resources:
{other}  - {name.split("-")[-1]}:
      Type: AWS::Lambda::Function
      Properties:
        Name: "{name}"  # as CodeDeploy writes it
        Alias: "{alias}"
        CurrentVersion: "{current}"
        TargetVersion: "{target}"
Hooks:
  - BeforeAllowTraffic: "credmate-staging-PreTrafficHook"
"""


def function_checks(
    *,
    http_health: bool = False,
    health_path: str = "/health",
    uses_database: bool = False,
    schema_mismatch: str = "fail",
    post: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A function's CREDMATE_CHECKS, as the probe reports it (`checks`)."""
    return {
        "pre": {
            "http_health": http_health,
            "health_path": health_path,
            "uses_database": uses_database,
            "schema_mismatch": schema_mismatch,
        },
        "post": post,
    }


class FakeClock:
    """Monotonic time that only moves when the code sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class FakeContext:
    remaining_ms: int = 180_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def streaming(payload: Any) -> StreamingBody:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


@dataclass
class StubbedAws:
    """One Stubber-backed client per service, handed to the hooks in place of hook_calls.client."""

    codedeploy: Any
    lambda_: Any
    codedeploy_stub: Stubber
    lambda_stub: Stubber
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def record(self, service: str) -> Callable[..., None]:
        def hook(params: dict[str, Any], model: Any, **_: Any) -> None:
            self.calls.append((f"{service}.{model.name}", params))

        return hook

    def operations(self, name: str) -> list[dict[str, Any]]:
        return [params for op, params in self.calls if op.endswith(f".{name}")]

    # -- CodeDeploy
    def get_deployment(self, appspec: str | None, deployment_id: str = DEPLOYMENT_ID) -> None:
        info: dict[str, Any] = {"deploymentId": deployment_id, "status": "InProgress"}
        if appspec is not None:
            info["revision"] = {"revisionType": "AppSpecContent", "appSpecContent": {"content": appspec}}
        self.codedeploy_stub.add_response(
            "get_deployment", {"deploymentInfo": info}, {"deploymentId": deployment_id}
        )

    def get_deployment_error(self, code: str, status: int = 400) -> None:
        self.codedeploy_stub.add_client_error(
            "get_deployment", service_error_code=code, http_status_code=status
        )

    def list_targets(self, *target_ids: str, next_token: str | None = None) -> None:
        response: dict[str, Any] = {"targetIds": list(target_ids)}
        if next_token:
            response["nextToken"] = next_token
        self.codedeploy_stub.add_response(
            "list_deployment_targets", response, {"deploymentId": DEPLOYMENT_ID}
        )

    def list_targets_error(self, code: str, status: int = 400) -> None:
        self.codedeploy_stub.add_client_error(
            "list_deployment_targets", service_error_code=code, http_status_code=status
        )

    def get_target(
        self,
        target: str,
        current: str | None = "6",
        *,
        function: str = FUNCTION,
        alias: str = "live",
        target_id: str | None = None,
    ) -> None:
        """GetDeploymentTarget for a Lambda deployment: lambdaTarget.lambdaFunctionInfo."""
        target_id = target_id or f"{function}:{alias}"
        info: dict[str, Any] = {"functionName": function, "functionAlias": alias, "targetVersion": target}
        if current is not None:
            info["currentVersion"] = current
        self.codedeploy_stub.add_response(
            "get_deployment_target",
            {
                "deploymentTarget": {
                    "deploymentTargetType": "LambdaTarget",
                    "lambdaTarget": {
                        "deploymentId": DEPLOYMENT_ID,
                        "targetId": target_id,
                        "targetArn": f"arn:aws:lambda:{REGION}:123456789012:function:{function}:{alias}",
                        "status": "InProgress",
                        "lambdaFunctionInfo": info,
                    },
                }
            },
            {"deploymentId": DEPLOYMENT_ID, "targetId": target_id},
        )

    def deployment_target(self, target: str, current: str | None = "6", **kwargs: Any) -> None:
        """The second source answering: one target, then its Lambda function info."""
        function = kwargs.get("function", FUNCTION)
        alias = kwargs.get("alias", "live")
        self.list_targets(f"{function}:{alias}")
        self.get_target(target, current, **kwargs)

    def put_status(self, status: str) -> None:
        self.codedeploy_stub.add_response(
            "put_lifecycle_event_hook_execution_status",
            {"lifecycleEventHookExecutionId": EXECUTION_ID},
            {"deploymentId": DEPLOYMENT_ID, "lifecycleEventHookExecutionId": EXECUTION_ID, "status": status},
        )

    def put_error(self, code: str, status: int = 400) -> None:
        self.codedeploy_stub.add_client_error(
            "put_lifecycle_event_hook_execution_status", service_error_code=code, http_status_code=status
        )

    # -- Lambda
    def invoke(
        self,
        version: str,
        payload: Any,
        *,
        function_error: str | None = None,
        executed_version: str | None = None,
        function: str = FUNCTION,
    ) -> None:
        response: dict[str, Any] = {
            "StatusCode": 200,
            "Payload": streaming(payload),
            "ExecutedVersion": executed_version or version,
        }
        if function_error:
            response["FunctionError"] = function_error
        self.lambda_stub.add_response(
            "invoke",
            response,
            {
                "FunctionName": function,
                "Qualifier": version,
                "InvocationType": "RequestResponse",
                "Payload": ANY,
            },
        )

    def invoke_error(self, code: str, status: int) -> None:
        self.lambda_stub.add_client_error("invoke", service_error_code=code, http_status_code=status)

    def invoked_events(self) -> list[tuple[str, dict[str, Any]]]:
        return [(p["Qualifier"], json.loads(p["Payload"])) for p in self.operations("Invoke")]


def make_client(service: str) -> Any:
    return boto3.client(
        service,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[StubbedAws]:
    codedeploy, lambda_ = make_client("codedeploy"), make_client("lambda")
    stubbed = StubbedAws(codedeploy, lambda_, Stubber(codedeploy), Stubber(lambda_))
    codedeploy.meta.events.register("provide-client-params.codedeploy", stubbed.record("codedeploy"))
    lambda_.meta.events.register("provide-client-params.lambda", stubbed.record("lambda"))
    clients = {"codedeploy": codedeploy, "lambda": lambda_}
    monkeypatch.setattr(hook_calls, "client", lambda service, **_: clients[service])
    with stubbed.codedeploy_stub, stubbed.lambda_stub:
        yield stubbed


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def runtime(fake_clock: FakeClock) -> hook_calls.Runtime:
    return hook_calls.Runtime(clock=fake_clock.clock, sleep=fake_clock.sleep, rng=random.Random(7))


@dataclass(frozen=True)
class TimedCall:
    operation: str  # botocore method name, e.g. "invoke"
    started: float  # fake-clock time the call started
    ended: float
    timeout: float  # the attempt's time allowance the hook gave hook_calls.client
    outcome: str  # "ok", "timeout" or the exception's class name


@dataclass
class SlowAws:
    """Makes the Stubber-backed clients' calls take time on the hook's fake clock.

    `delays["invoke"] = [30.0, 0.5]` makes the first Invoke take 30 s, the second 0.5 s (then 0 s);
    `float("inf")` hangs; `fail_with[operation]` is raised by every call after its delay. A call slower
    than the attempt's time allowance the hook gave `hook_calls.client`
    (its connect plus read timeout) costs exactly that allowance and ends in ReadTimeoutError, as botocore
    does; the stub's queued answer is not consumed then. Every call is recorded with its timing.
    """

    aws: StubbedAws
    clock: FakeClock
    delays: dict[str, list[float]] = field(default_factory=dict)
    default_delay: float = 0.0
    fail_with: dict[str, Exception] = field(default_factory=dict)  # raised (after the delay) every time
    calls: list[TimedCall] = field(default_factory=list)

    def client(self, service: str, *, timeout: float) -> Any:
        inner = {"codedeploy": self.aws.codedeploy, "lambda": self.aws.lambda_}[service]
        return _SlowClient(self, inner, timeout)

    def of(self, operation: str) -> list[TimedCall]:
        return [c for c in self.calls if c.operation == operation]


class _SlowClient:
    def __init__(self, owner: SlowAws, inner: Any, timeout: float) -> None:
        self._owner, self._inner, self._timeout = owner, inner, timeout

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._inner, name)
        owner, timeout = self._owner, self._timeout

        def call(**kwargs: Any) -> Any:
            queue = owner.delays.get(name) or []
            delay = queue.pop(0) if queue else owner.default_delay
            started = owner.clock.now
            if delay >= timeout:
                owner.clock.now += timeout
                owner.calls.append(TimedCall(name, started, owner.clock.now, timeout, "timeout"))
                raise ReadTimeoutError(endpoint_url=f"https://{name}.fake.invalid")
            owner.clock.now += delay
            try:
                if name in owner.fail_with:
                    raise owner.fail_with[name]
                result = method(**kwargs)
            except Exception as exc:
                owner.calls.append(TimedCall(name, started, owner.clock.now, timeout, type(exc).__name__))
                raise
            owner.calls.append(TimedCall(name, started, owner.clock.now, timeout, "ok"))
            return result

        return call


@pytest.fixture
def slow_aws(aws: StubbedAws, fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> SlowAws:
    slow = SlowAws(aws, fake_clock)
    monkeypatch.setattr(hook_calls, "client", slow.client)
    return slow


class HangingServer:
    """An HTTP server on 127.0.0.1 that reads each request and never answers (until closed).

    Stands in for a Lambda endpoint (boto3's endpoint_url) or an API whose requests hang: real sockets,
    real timeouts. `hits` holds the monotonic time each request arrived.
    """

    def __init__(self) -> None:
        self.hits: list[tuple[str, str, float]] = []
        self._release = threading.Event()
        owner = self

        class Hang(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def _hang(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.hits.append((self.command, self.path, time.monotonic()))
                owner._release.wait(30)

            do_GET = do_POST = do_OPTIONS = _hang

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Hang)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> HangingServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


def log_lines(output: str) -> list[dict[str, Any]]:
    """The hooks' structured log lines from captured stdout."""
    return [json.loads(line) for line in output.splitlines() if line.startswith("{") and '"check"' in line]
