"""CodeDeploy BeforeAllowTraffic hook: test the exact version CodeDeploy is about to shift traffic to.

Handler `pre_traffic.handler`. Environment (set per hook instance by stacks/constructs/canary.py):

* TARGET_FUNCTION_NAME: the function under deployment; TARGET_ALIAS: its live alias (default `live`);
* FALLBACK_TARGET_VERSION_ARN: the new version's ARN (SAM's pattern), used when the deployment's AppSpec
  cannot be read or does not name this function;
* CHECK_HTTP_HEALTH: `true` to drive an API Gateway `GET HEALTH_PATH` event through the real handler;
  HEALTH_PATH: the function's health route (default `/health`);
* SCHEMA_MISMATCH: `fail` (default) or `warn` when the code's Alembic head differs from the database's;
* USES_DATABASE: `true` when the function needs its database: then, in `fail` mode, the deployment fails
  unless the probe read the database's version (from `alembic_version`, or the backend's own reader) and it
  equals the code's head: a database that cannot be read (`db_error`), no database version at all, or a
  mismatch all fail. A function without USES_DATABASE only gets a warning when no version is reported.

Which version: GetDeployment's `revision.appSpecContent.content` names, per function, the alias, its
CurrentVersion and the TargetVersion; the TargetVersion for TARGET_FUNCTION_NAME is tested. `$LATEST`,
the alias, and CurrentVersion (the version already live) are refused: testing any of them would pass a
deployment whose new code was never run. The invocation's ExecutedVersion must match too.

Checks, each logged as one JSON line: target_version, probe (init and import sweep), schema, http_health.

Time: the hook reports before its own timeout whatever the target does. Every call gets its timeouts from
the budget left when it starts (a client per attempt), no attempt starts without time to finish, and
GetDeployment may use only part of the checks' time, so the fallback still leaves time to invoke.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import hook_core
import yaml
from botocore.exceptions import ReadTimeoutError
from hook_core import (
    Budget,
    CheckResult,
    ConfigError,
    DeadlineExceeded,
    HookIds,
    HookLog,
    Runtime,
    call_with_retry,
    describe,
    env_flag,
    env_required,
    health_problem,
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
    health_path: str = "/health"
    uses_database: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> PreTrafficConfig:
        mode = environ.get("SCHEMA_MISMATCH", "fail").strip().lower() or "fail"
        if mode not in ("fail", "warn"):
            raise ConfigError(f"environment variable SCHEMA_MISMATCH={mode!r} must be 'fail' or 'warn'")
        health_path = environ.get("HEALTH_PATH", "").strip() or "/health"
        if not health_path.startswith("/"):
            raise ConfigError(f"environment variable HEALTH_PATH={health_path!r} must start with '/'")
        return cls(
            function_name=env_required(environ, "TARGET_FUNCTION_NAME"),
            alias=environ.get("TARGET_ALIAS", "").strip() or "live",
            fallback_version_arn=environ.get("FALLBACK_TARGET_VERSION_ARN", "").strip() or None,
            check_http_health=env_flag(environ, "CHECK_HTTP_HEALTH"),
            schema_mismatch="warn" if mode == "warn" else "fail",
            health_path=health_path,
            uses_database=env_flag(environ, "USES_DATABASE"),
        )


# ---------------------------------------------------------------------------------------------------------
# AppSpec: JSON or YAML (PyYAML ships in the hook asset: lambda_src/hooks/requirements.txt)


class AppSpecError(ValueError):
    pass


def parse_appspec(content: str) -> Any:
    text = content.strip()
    if not text:
        raise AppSpecError("AppSpec content is empty")
    json_error = None
    if text.startswith("{"):
        try:
            return json.loads(text)
        except ValueError as exc:
            json_error = exc  # maybe flow-style YAML: PyYAML decides
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())[:300]
        if json_error is not None:
            raise AppSpecError(f"AppSpec JSON is invalid ({json_error}), and not YAML either") from exc
        raise AppSpecError(f"AppSpec YAML is invalid: {detail}") from exc
    if document is None:
        raise AppSpecError("AppSpec content has only comments")
    return document


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


# GetDeployment may use this much of the checks' time at most (and at most this share of it): when it is
# slow, the fallback version still has the rest to be invoked.
GET_DEPLOYMENT_SECONDS = 20.0
GET_DEPLOYMENT_SHARE = 0.25
GET_DEPLOYMENT_ATTEMPT_SECONDS = 8.0


def read_appspec_targets(
    codedeploy_factory: Callable[[float], Any], deployment_id: str, *, deadline: float, runtime: Runtime
) -> tuple[list[AppSpecTarget] | None, str | None]:
    """(targets, problem): GetDeployment's AppSpec, or why it is unusable (the fallback then decides)."""
    left = remaining(deadline, runtime)
    own_deadline = runtime.clock() + min(GET_DEPLOYMENT_SECONDS, left * GET_DEPLOYMENT_SHARE)
    try:
        response = call_with_retry(
            lambda seconds: codedeploy_factory(seconds).get_deployment(deploymentId=deployment_id),
            what="GetDeployment",
            deadline=own_deadline,
            runtime=runtime,
            max_attempt=GET_DEPLOYMENT_ATTEMPT_SECONDS,
        )
    except ReadTimeoutError:
        return None, "GetDeployment did not answer within its share of the time budget"
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
    lambda_factory: Callable[[float], Any],
    *,
    function_name: str,
    version: str,
    event: Mapping[str, Any],
    deadline: float,
    runtime: Runtime,
) -> Invocation:
    def call(seconds: float) -> tuple[Mapping[str, Any], bytes]:
        # Reading the payload is part of the attempt: its read timeout is the same client's.
        response = lambda_factory(seconds).invoke(
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


def health_event(path: str = "/health") -> dict[str, Any]:
    """An API Gateway REST proxy event for GET `path`, as the deployed API would send it."""
    headers = {
        "Accept": "application/json",
        "Host": "pre-traffic.credmate.invalid",
        "User-Agent": "credmate-pre-traffic-hook",
    }
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": "GET",
        "headers": headers,
        "multiValueHeaders": {key: [value] for key, value in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": "GET",
            "path": f"/v1{path}",
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
    lambda_factory: Callable[[float], Any],
    config: PreTrafficConfig,
    target: TargetVersion,
    event: Mapping[str, Any],
    deadline: float,
    runtime: Runtime,
) -> tuple[CheckResult | None, Invocation | None]:
    """Invoke and turn transport-level failures into a failed check; (None, invocation) when it answered."""
    try:
        invocation = invoke_version(
            lambda_factory,
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
    except DeadlineExceeded as exc:
        return CheckResult(check, False, f"invoke of version {target.version}: {exc}"), None
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


def schema_check(
    payload: Mapping[str, Any], mode: Literal["fail", "warn"], *, uses_database: bool = False
) -> CheckResult:
    head, db = payload.get("schema_head"), payload.get("db_version")
    db_error, schema_error = payload.get("db_error"), payload.get("schema_error")
    schema_note = f" (schema head unreadable: {schema_error})" if schema_error else ""
    if db is None:
        if db_error:
            reason = f"database is configured but cannot be read: {db_error}{schema_note}"
            fix = "fix its DATABASE_URL, network or migrations"
        else:
            reason = (
                f"no database version reported (no DATABASE_URL or COMBINED_SECRET_ARN?): schema head {head} "
                "not compared" + schema_note
            )
            fix = "give it DATABASE_URL or the secret's database_url"
        if uses_database and mode == "fail":
            return CheckResult(
                "schema",
                False,
                f"{reason} (this function uses its database: {fix}, or set SCHEMA_MISMATCH=warn)",
            )
        why = "[SCHEMA_MISMATCH=warn]" if uses_database else "[USES_DATABASE=false]"
        return CheckResult("schema", True, f"{reason} {why}", warning=True)
    if head == db:
        return CheckResult("schema", True, f"schema head {head} matches the database")
    reason = (
        f"schema mismatch: code expects Alembic head {head}, database is at {db} "
        f"(run the migrations, or set SCHEMA_MISMATCH=warn){schema_note}"
    )
    if mode == "warn":
        return CheckResult("schema", True, reason + " [SCHEMA_MISMATCH=warn]", warning=True)
    return CheckResult("schema", False, reason)


def http_health_check(invocation: Invocation, version: str, path: str = "/health") -> CheckResult:
    payload = invocation.payload
    if not isinstance(payload, Mapping):
        return CheckResult(
            "http_health",
            False,
            f"GET {path} on version {version} returned no API Gateway response: {str(payload)[:300]}",
        )
    body = payload.get("body")
    problem = health_problem(payload.get("statusCode"), body if isinstance(body, str) else None)
    if problem:
        return CheckResult("http_health", False, f"GET {path} on version {version} {problem}")
    return CheckResult("http_health", True, f"GET {path} on version {version}: healthy (200)")


# ---------------------------------------------------------------------------------------------------------
# The hook


@dataclass
class Clients:
    """A client per attempt, with timeouts from the budget left when it starts (hook_core.client); made
    only when called, so a broken Lambda client never stops the CodeDeploy report."""

    def codedeploy(self, seconds: float) -> Any:
        return hook_core.client("codedeploy", timeout=seconds)

    def lambda_(self, seconds: float) -> Any:
        return hook_core.client("lambda", timeout=seconds)


def pre_traffic_checks(
    ids: HookIds,
    budget: Budget,
    *,
    environ: Mapping[str, str],
    clients: Clients,
    log: HookLog,
    runtime: Runtime,
) -> list[CheckResult]:
    try:
        config = PreTrafficConfig.from_env(environ)
    except ConfigError as exc:
        return [log.result(CheckResult("config", False, str(exc)))]
    log.function = config.function_name

    targets, problem = read_appspec_targets(
        clients.codedeploy, ids.deployment_id, deadline=budget.checks, runtime=runtime
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

    probe_event = {PROBE_KEY: {"deployment_id": ids.deployment_id}}
    failed, invocation = _invoke_check(
        "probe", clients.lambda_, config, target, probe_event, budget.checks, runtime
    )
    probe = failed or probe_check(invocation, target.version)  # type: ignore[arg-type]
    results.append(log.result(probe))
    if isinstance(probe.data, Mapping) and "schema_head" in probe.data:
        results.append(
            log.result(schema_check(probe.data, config.schema_mismatch, uses_database=config.uses_database))
        )
    else:
        results.append(log.result(CheckResult("schema", False, "not checked: the probe gave no versions")))

    if config.check_http_health:
        failed, invocation = _invoke_check(
            "http_health",
            clients.lambda_,
            config,
            target,
            health_event(config.health_path),
            budget.checks,
            runtime,
        )
        results.append(
            log.result(failed or http_health_check(invocation, target.version, config.health_path))  # type: ignore[arg-type]
        )
    return results


def run_pre_traffic(
    event: object, context: object, *, environ: Mapping[str, str], runtime: Runtime
) -> dict[str, Any]:
    log = HookLog(hook="pre_traffic", function=environ.get("TARGET_FUNCTION_NAME"))
    clients = Clients()
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
