"""CodeDeploy BeforeAllowTraffic hook: test the exact version CodeDeploy is about to shift traffic to.

Handler `pre_traffic.handler`. Environment (set per hook instance by stacks/constructs/canary.py):

* TARGET_FUNCTION_NAME: the function under deployment; TARGET_ALIAS: its live alias (default `live`);
* FALLBACK_TARGET_VERSION_ARN: the new version's ARN (SAM's pattern), used when the deployment's AppSpec
  cannot be read or does not name this function;
* CHECK_HTTP_HEALTH: `true` to drive an API Gateway `GET /health` event through the real handler;
* SCHEMA_MISMATCH: `fail` (default) or `warn` when the code's Alembic head differs from the database's.

Which version: GetDeployment's `revision.appSpecContent.content` names, per function, the alias, its
CurrentVersion and the TargetVersion; the TargetVersion for TARGET_FUNCTION_NAME is tested. `$LATEST`,
the alias, and CurrentVersion (the version already live) are refused: testing any of them would pass a
deployment whose new code was never run. The invocation's ExecutedVersion must match too.

Checks, each logged as one JSON line: target_version, probe (init and import sweep), schema, http_health.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import hook_core
from botocore.exceptions import ReadTimeoutError
from hook_core import (
    Budget,
    CheckResult,
    ConfigError,
    HookIds,
    HookLog,
    Runtime,
    call_with_retry,
    describe,
    env_flag,
    env_required,
    remaining,
    run_hook,
)

PROBE_KEY = "credmate_probe"
_VERSION_NUMBER = re.compile(r"^[0-9]+$")


@dataclass(frozen=True)
class PreTrafficConfig:
    function_name: str
    alias: str
    fallback_version_arn: str | None
    check_http_health: bool
    schema_mismatch: Literal["fail", "warn"]

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> PreTrafficConfig:
        mode = environ.get("SCHEMA_MISMATCH", "fail").strip().lower() or "fail"
        if mode not in ("fail", "warn"):
            raise ConfigError(f"environment variable SCHEMA_MISMATCH={mode!r} must be 'fail' or 'warn'")
        return cls(
            function_name=env_required(environ, "TARGET_FUNCTION_NAME"),
            alias=environ.get("TARGET_ALIAS", "").strip() or "live",
            fallback_version_arn=environ.get("FALLBACK_TARGET_VERSION_ARN", "").strip() or None,
            check_http_health=env_flag(environ, "CHECK_HTTP_HEALTH"),
            schema_mismatch="warn" if mode == "warn" else "fail",
        )


# ---------------------------------------------------------------------------------------------------------
# AppSpec: JSON, or the block-style YAML subset AppSpecs use (no third-party YAML parser in this asset)


class AppSpecError(ValueError):
    pass


def _scalar(text: str) -> str | None:
    text = text.strip()
    if text[:1] in ("'", '"'):
        end = text.find(text[0], 1)
        if end < 0:
            raise AppSpecError(f"unterminated quote in AppSpec value {text[:60]!r}")
        return text[1:end]
    if text.startswith(("{", "[")):
        raise AppSpecError(f"flow-style YAML is not supported in an AppSpec: {text[:60]!r}")
    text = re.split(r"\s+#", text, maxsplit=1)[0].strip()
    return None if text in ("", "~", "null") else text


_KEY = re.compile(r"""^("[^"]*"|'[^']*'|[^'"\s][^:]*?)\s*:(?:\s+(.*)|\s*)$""")


def _parse_block(lines: list[list[Any]], i: int, indent: int) -> tuple[Any, int]:
    if lines[i][1].startswith("-"):
        items: list[Any] = []
        while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("-"):
            text = lines[i][1]
            rest = text[1:].lstrip()
            if not rest:
                if i + 1 < len(lines) and lines[i + 1][0] > indent:
                    value, i = _parse_block(lines, i + 1, lines[i + 1][0])
                else:
                    value, i = None, i + 1
            elif _KEY.match(rest):
                # "- key: value" opens a mapping whose keys align with "key".
                lines[i] = [indent + len(text) - len(rest), rest]
                value, i = _parse_block(lines, i, lines[i][0])
            else:
                value, i = _scalar(rest), i + 1
            items.append(value)
        return items, i
    mapping: dict[str, Any] = {}
    while i < len(lines) and lines[i][0] == indent and not lines[i][1].startswith("-"):
        match = _KEY.match(lines[i][1])
        if not match:
            raise AppSpecError(f"cannot read AppSpec line {lines[i][1]!r}")
        key = _scalar(match.group(1)) or ""
        if match.group(2) is not None and match.group(2).strip():
            mapping[key], i = _scalar(match.group(2)), i + 1
        elif i + 1 < len(lines) and (
            lines[i + 1][0] > indent or (lines[i + 1][0] == indent and lines[i + 1][1].startswith("-"))
        ):
            mapping[key], i = _parse_block(lines, i + 1, lines[i + 1][0])
        else:
            mapping[key], i = None, i + 1
    return mapping, i


def parse_appspec(content: str) -> Any:
    text = content.strip()
    if not text:
        raise AppSpecError("AppSpec content is empty")
    if text.startswith("{"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise AppSpecError(f"AppSpec JSON is invalid: {exc}") from exc
    lines: list[list[Any]] = [
        [len(raw) - len(raw.lstrip(" ")), raw.strip()]
        for raw in text.splitlines()
        if raw.strip() and not raw.strip().startswith("#") and raw.strip() != "---"
    ]
    if not lines:
        raise AppSpecError("AppSpec content has only comments")
    value, end = _parse_block(lines, 0, lines[0][0])
    if end != len(lines):
        raise AppSpecError(f"cannot read AppSpec from line {lines[end][1]!r} (unexpected indentation)")
    return value


@dataclass(frozen=True)
class AppSpecTarget:
    resource: str
    name: str | None
    alias: str | None
    current_version: str | None
    target_version: str | None


def appspec_targets(document: Any) -> list[AppSpecTarget]:
    if not isinstance(document, Mapping):
        raise AppSpecError("AppSpec is not a mapping")
    resources = document.get("Resources") or document.get("resources")
    if isinstance(resources, Mapping):
        resources = [{key: value} for key, value in resources.items()]
    if not isinstance(resources, list):
        raise AppSpecError("AppSpec has no Resources list")
    found = []
    for item in resources:
        if not isinstance(item, Mapping):
            continue
        for resource, body in item.items():
            props = body.get("Properties") if isinstance(body, Mapping) else None
            if not isinstance(props, Mapping):
                continue

            def text(key: str, props: Mapping[str, Any] = props) -> str | None:
                value = props.get(key)
                return None if value is None else str(value)

            found.append(
                AppSpecTarget(
                    str(resource), text("Name"), text("Alias"), text("CurrentVersion"), text("TargetVersion")
                )
            )
    return found


# ---------------------------------------------------------------------------------------------------------
# Choosing the version to test


class TargetVersionError(ValueError):
    pass


@dataclass(frozen=True)
class TargetVersion:
    version: str
    source: Literal["appspec", "fallback"]
    current_version: str | None
    notes: tuple[str, ...] = ()


def function_name_of(value: str) -> str:
    """`name`, `name:qualifier` or an ARN `arn:aws:lambda:region:account:function:name[:qualifier]` → name."""
    parts = value.split(":")
    if value.startswith("arn:") and len(parts) >= 7:
        return parts[6]
    return parts[0]


def version_of(value: str) -> str:
    """A version number or the qualifier of a version ARN."""
    parts = value.split(":")
    if value.startswith("arn:") and len(parts) >= 8:
        return parts[7]
    return value.strip()


def version_problem(version: str | None, *, current: str | None, alias: str) -> str | None:
    if not version:
        return "no version given"
    if version == "$LATEST":
        return "$LATEST is never tested: CodeDeploy shifts traffic to a published version"
    if version == alias or not _VERSION_NUMBER.match(version):
        return f"'{version}' is not a published version number (an alias or $LATEST is never tested)"
    if current is not None and version == current:
        return f"version {version} is the CurrentVersion (already live), not the new one"
    return None


def choose_target_version(
    targets: Sequence[AppSpecTarget] | None, appspec_problem: str | None, config: PreTrafficConfig
) -> TargetVersion:
    """The version to test: the AppSpec's TargetVersion for this function, else the configured fallback."""
    wanted = function_name_of(config.function_name)
    problems = [f"AppSpec: {appspec_problem}"] if appspec_problem else []
    current: str | None = None
    mine = [t for t in targets or () if t.name and function_name_of(t.name) == wanted]
    if targets is not None and not mine:
        problems.append(f"AppSpec names no resource for function {wanted}")
    for entry in mine:
        current = version_of(entry.current_version) if entry.current_version else None
        target = version_of(entry.target_version) if entry.target_version else None
        if entry.alias and entry.alias != config.alias:
            problems.append(
                f"AppSpec resource {entry.resource} deploys alias {entry.alias}, not {config.alias}"
            )
            continue
        problem = version_problem(target, current=current, alias=config.alias)
        if problem is None and target is not None:
            return TargetVersion(target, "appspec", current)
        problems.append(f"AppSpec TargetVersion refused: {problem}")
    if config.fallback_version_arn:
        arn = config.fallback_version_arn
        fallback = version_of(arn)
        if arn.startswith("arn:") and function_name_of(arn) != wanted:
            problems.append(f"FALLBACK_TARGET_VERSION_ARN {arn} is not a version of {wanted}")
        elif not arn.startswith("arn:") or len(arn.split(":")) < 8:
            problems.append(f"FALLBACK_TARGET_VERSION_ARN {arn} is not a version ARN (…:function:NAME:N)")
        else:
            problem = version_problem(fallback, current=current, alias=config.alias)
            if problem is None:
                return TargetVersion(fallback, "fallback", current, tuple(problems))
            problems.append(f"FALLBACK_TARGET_VERSION_ARN refused: {problem}")
    else:
        problems.append("FALLBACK_TARGET_VERSION_ARN is not set")
    raise TargetVersionError("; ".join(problems))


def read_appspec_targets(
    codedeploy: Any, deployment_id: str, *, deadline: float, runtime: Runtime
) -> tuple[list[AppSpecTarget] | None, str | None]:
    """(targets, problem): GetDeployment's AppSpec, or why it is unusable (the fallback then decides)."""
    try:
        response = call_with_retry(
            lambda: codedeploy.get_deployment(deploymentId=deployment_id),
            what="GetDeployment",
            deadline=deadline,
            runtime=runtime,
        )
    except Exception as exc:
        return None, f"GetDeployment failed: {describe(exc)}"
    info = response.get("deploymentInfo") if isinstance(response, Mapping) else None
    revision = info.get("revision") if isinstance(info, Mapping) else None
    content = revision.get("appSpecContent", {}).get("content") if isinstance(revision, Mapping) else None
    if not isinstance(content, str):
        return None, "GetDeployment returned no revision.appSpecContent.content"
    try:
        return appspec_targets(parse_appspec(content)), None
    except AppSpecError as exc:
        return None, str(exc)


# ---------------------------------------------------------------------------------------------------------
# Invoking the version


@dataclass(frozen=True)
class Invocation:
    status_code: int | None
    function_error: str | None
    executed_version: str | None
    payload: Any  # parsed JSON, or the raw text when it is not JSON


def invoke_version(
    lambda_client: Any,
    *,
    function_name: str,
    version: str,
    event: Mapping[str, Any],
    deadline: float,
    runtime: Runtime,
) -> Invocation:
    def call() -> tuple[Mapping[str, Any], bytes]:
        response = lambda_client.invoke(
            FunctionName=function_name,
            Qualifier=version,
            InvocationType="RequestResponse",
            Payload=json.dumps(event).encode(),
        )
        body = response.get("Payload")
        return response, body.read() if body is not None else b""

    response, raw = call_with_retry(
        call, what=f"Invoke {function_name}:{version}", deadline=deadline, runtime=runtime
    )
    text = raw.decode("utf-8", errors="replace")
    try:
        payload: Any = json.loads(text) if text else None
    except ValueError:
        payload = text
    return Invocation(
        response.get("StatusCode"), response.get("FunctionError"), response.get("ExecutedVersion"), payload
    )


def function_error_reason(invocation: Invocation) -> str:
    payload = invocation.payload
    if isinstance(payload, Mapping) and ("errorType" in payload or "errorMessage" in payload):
        return f"{payload.get('errorType') or invocation.function_error}: {payload.get('errorMessage', '')}"
    return f"{invocation.function_error}: {str(payload)[:500]}"


def health_event() -> dict[str, Any]:
    """An API Gateway REST proxy event for GET /health, as the deployed API would send it."""
    headers = {
        "Accept": "application/json",
        "Host": "pre-traffic.credmate.invalid",
        "User-Agent": "credmate-pre-traffic-hook",
    }
    return {
        "resource": "/{proxy+}",
        "path": "/health",
        "httpMethod": "GET",
        "headers": headers,
        "multiValueHeaders": {key: [value] for key, value in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": "health"},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": "GET",
            "path": "/v1/health",
            "stage": "v1",
            "requestId": "credmate-pre-traffic",
            "accountId": "000000000000",
            "apiId": "pretraffic",
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "credmate-pre-traffic-hook"},
        },
        "body": None,
        "isBase64Encoded": False,
    }


def _invoke_check(
    check: str,
    lambda_client: Any,
    config: PreTrafficConfig,
    target: TargetVersion,
    event: Mapping[str, Any],
    deadline: float,
    runtime: Runtime,
) -> tuple[CheckResult | None, Invocation | None]:
    """Invoke and turn transport-level failures into a failed check; (None, invocation) when it answered."""
    try:
        invocation = invoke_version(
            lambda_client,
            function_name=config.function_name,
            version=target.version,
            event=event,
            deadline=deadline,
            runtime=runtime,
        )
    except ReadTimeoutError:
        return CheckResult(
            check,
            False,
            f"invoke of version {target.version} timed out (no answer within the hook's time budget)",
        ), None
    except Exception as exc:
        return CheckResult(check, False, f"invoke of version {target.version} failed: {describe(exc)}"), None
    if invocation.function_error:
        return CheckResult(
            check, False, f"version {target.version} raised {function_error_reason(invocation)}"
        ), invocation
    if invocation.executed_version not in (None, target.version):
        return CheckResult(
            check,
            False,
            f"Lambda ran version {invocation.executed_version}, not "
            f"{target.version}: refusing a result about other code",
        ), invocation
    return None, invocation


def probe_check(invocation: Invocation, version: str) -> CheckResult:
    payload = invocation.payload
    if not isinstance(payload, Mapping) or payload.get("probe") not in ("ok", "failed"):
        return CheckResult(
            "probe",
            False,
            f"version {version} answered the probe with something that is not a "
            f"probe response (is credmate_probe.handler its handler?): "
            f"{str(payload)[:300]}",
        )
    if payload["probe"] != "ok":
        failures = payload.get("import_failures") or []
        errors = payload.get("errors") or [f"{f.get('module')}: {f.get('error')}" for f in failures]
        return CheckResult(
            "probe", False, f"probe of version {version} failed: " + "; ".join(map(str, errors)), data=payload
        )
    checked = payload.get("imports_checked") or []
    return CheckResult(
        "probe",
        True,
        f"version {version} initialised (handler {payload.get('handler')}, code "
        f"{payload.get('code_version')}); {len(checked)} lazy import(s) OK",
        data=payload,
    )


def schema_check(payload: Mapping[str, Any], mode: Literal["fail", "warn"]) -> CheckResult:
    head, db = payload.get("schema_head"), payload.get("db_version")
    if db is None:
        return CheckResult(
            "schema",
            True,
            f"no database version reported (no database configured?): schema head {head} not compared",
            warning=True,
        )
    if head == db:
        return CheckResult("schema", True, f"schema head {head} matches the database")
    reason = (
        f"schema mismatch: code expects Alembic head {head}, database is at {db} "
        f"(run the migrations, or set SCHEMA_MISMATCH=warn)"
    )
    if mode == "warn":
        return CheckResult("schema", True, reason + " [SCHEMA_MISMATCH=warn]", warning=True)
    return CheckResult("schema", False, reason)


def http_health_check(invocation: Invocation, version: str) -> CheckResult:
    payload = invocation.payload
    if not isinstance(payload, Mapping):
        return CheckResult(
            "http_health",
            False,
            f"GET /health on version {version} returned no API Gateway response: {str(payload)[:300]}",
        )
    status, body = payload.get("statusCode"), payload.get("body")
    try:
        parsed = json.loads(body) if isinstance(body, str) and body else None
    except ValueError:
        parsed = None
    health = parsed.get("status") if isinstance(parsed, Mapping) else None
    if status != 200:
        return CheckResult(
            "http_health", False, f"GET /health on version {version} returned {status}: {str(body)[:300]}"
        )
    if health != "healthy":
        return CheckResult(
            "http_health",
            False,
            f"GET /health on version {version} returned 200 but status "
            f"{health!r}, not 'healthy': {str(body)[:300]}",
        )
    return CheckResult("http_health", True, f"GET /health on version {version}: 200 healthy")


# ---------------------------------------------------------------------------------------------------------
# The hook


@dataclass
class Clients:
    """Clients created on first use, so a broken Lambda client never stops the CodeDeploy report."""

    runtime: Runtime
    checks_deadline: float = 0.0
    _codedeploy: Any = None

    def codedeploy(self) -> Any:
        if self._codedeploy is None:
            self._codedeploy = hook_core.client("codedeploy", read_timeout=20)
        return self._codedeploy

    def lambda_(self) -> Any:
        # The read timeout is what is left of the checks' budget: a hung target cannot eat the report's time.
        return hook_core.client("lambda", read_timeout=remaining(self.checks_deadline, self.runtime))


def pre_traffic_checks(
    ids: HookIds,
    budget: Budget,
    *,
    environ: Mapping[str, str],
    clients: Clients,
    log: HookLog,
    runtime: Runtime,
) -> list[CheckResult]:
    clients.checks_deadline = budget.checks
    try:
        config = PreTrafficConfig.from_env(environ)
    except ConfigError as exc:
        return [log.result(CheckResult("config", False, str(exc)))]
    log.function = config.function_name

    targets, problem = read_appspec_targets(
        clients.codedeploy(), ids.deployment_id, deadline=budget.checks, runtime=runtime
    )
    try:
        target = choose_target_version(targets, problem, config)
    except TargetVersionError as exc:
        return [log.result(CheckResult("target_version", False, f"no version to test: {exc}"))]
    log.version = target.version
    note = f" (AppSpec unusable: {'; '.join(target.notes)})" if target.notes else ""
    results = [
        log.result(
            CheckResult(
                "target_version",
                True,
                f"testing version {target.version} from the {target.source}{note}; "
                f"current version {target.current_version or 'unknown'}",
                warning=bool(target.notes),
            )
        )
    ]

    lambda_client = clients.lambda_()
    probe_event = {PROBE_KEY: {"deployment_id": ids.deployment_id}}
    failed, invocation = _invoke_check(
        "probe", lambda_client, config, target, probe_event, budget.checks, runtime
    )
    probe = failed or probe_check(invocation, target.version)  # type: ignore[arg-type]
    results.append(log.result(probe))
    if isinstance(probe.data, Mapping) and "schema_head" in probe.data:
        results.append(log.result(schema_check(probe.data, config.schema_mismatch)))
    else:
        results.append(log.result(CheckResult("schema", False, "not checked: the probe gave no versions")))

    if config.check_http_health:
        failed, invocation = _invoke_check(
            "http_health", lambda_client, config, target, health_event(), budget.checks, runtime
        )
        results.append(log.result(failed or http_health_check(invocation, target.version)))  # type: ignore[arg-type]
    return results


def run_pre_traffic(
    event: object, context: object, *, environ: Mapping[str, str], runtime: Runtime
) -> dict[str, Any]:
    log = HookLog(hook="pre_traffic", function=environ.get("TARGET_FUNCTION_NAME"))
    clients = Clients(runtime)
    return run_hook(
        event,
        context,
        log=log,
        runtime=runtime,
        codedeploy_factory=clients.codedeploy,
        checks=lambda ids, budget: pre_traffic_checks(
            ids, budget, environ=environ, clients=clients, log=log, runtime=runtime
        ),
    )


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return run_pre_traffic(event, context, environ=os.environ, runtime=Runtime())
