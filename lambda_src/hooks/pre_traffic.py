"""CodeDeploy BeforeAllowTraffic hook: test the exact version CodeDeploy is about to shift traffic to.

Handler `pre_traffic.handler`. One instance serves every deployment group of an environment. Environment:

* TARGET_ALIAS: the alias the environment's deployments shift (default `live`). Nothing else: the hook reads
  the function from the deployment and what to check from the function.

A function whose checks say `uses_database`, in `fail` mode: the deployment fails unless the probe read the
database's version (from `alembic_version`, or the backend's own reader) and it equals the code's head: a
database that cannot be read (`db_error`), no database version at all, or a mismatch all fail. A function
without `uses_database` only gets a warning when no version is reported.

Which function and version (hook_target.resolve_target, shared with the post-traffic hook): GetDeployment's
`revision.appSpecContent` (the one function resource whose Alias is TARGET_ALIAS, its TargetVersion), else
CodeDeploy's ListDeploymentTargets + GetDeploymentTarget (`lambdaTarget.lambdaFunctionInfo`: functionName,
functionAlias, currentVersion, targetVersion). Neither usable: Failed, naming both. `$LATEST`, the alias and
the CurrentVersion (the version already live) are refused: testing any of them would pass a deployment whose
new code was never run. Every invocation's ExecutedVersion must match too. GetDeployment and the targets API
each get only a share of the checks' time, so the invocations keep the rest.

What to check: the version's probe (`{"credmate_probe": {"deployment_id": ...}}`) answers with `checks`, its
function's CREDMATE_CHECKS variable parsed; `checks.pre` decides:

* `http_health`: drive an API Gateway `GET health_path` event through the real handler;
* `schema_mismatch`: `fail` or `warn` when the code's Alembic head differs from the database's;
* `uses_database`: in `fail` mode, a database that is configured but cannot be read (the probe's
  `db_error`) fails the deployment. Without a configured database (no version, no error) the schema is not
  compared, with a warning.

A probe response without valid `checks` fails the deployment ("the function has no CREDMATE_CHECKS
(deployed by an older credmate-lambda?)"): nothing would say what to check.

Checks, each logged as one JSON line with the function's name and catalog label: target_version, probe
(init and import sweep), checks, schema, http_health.

Time: the hook reports before its own timeout whatever the target does. Every call gets its timeouts from
the budget left when it starts (a client per attempt), and no attempt starts without time to finish.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from hook_calls import Budget, Clients, Runtime
from hook_checks import PROBE_KEY, Invocation, function_checks, health_problem, invoke_check
from hook_report import CheckResult, HookIds, HookLog, run_hook
from hook_target import find_target


@dataclass(frozen=True)
class PreTrafficConfig:
    alias: str = "live"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> PreTrafficConfig:
        return cls(alias=environ.get("TARGET_ALIAS", "").strip() or "live")


# ---------------------------------------------------------------------------------------------------------
# Checks on the version's answers


def health_event(path: str = "/health") -> dict[str, Any]:
    """An API Gateway REST proxy event for GET `path`, as the deployed API would send it. (The backend's tests
    build the same event: the hook ships apart from the backend, so neither can import the other's.)"""
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


def pre_traffic_checks(
    ids: HookIds,
    budget: Budget,
    *,
    environ: Mapping[str, str],
    clients: Clients,
    log: HookLog,
    runtime: Runtime,
) -> list[CheckResult]:
    config = PreTrafficConfig.from_env(environ)
    found, target = find_target(
        clients, ids, alias=config.alias, deadline=budget.checks, runtime=runtime, log=log
    )
    results = [found]
    if target is None:
        return results

    probe_event = {PROBE_KEY: {"deployment_id": ids.deployment_id}}
    failed, invocation = invoke_check("probe", clients.lambda_, target, probe_event, budget.checks, runtime)
    if failed is not None or invocation is None:
        results.append(log.result(failed or CheckResult("probe", False, "no answer")))
        return results  # no probe answer: nothing says what else to check
    payload = invocation.payload
    if isinstance(payload, Mapping) and isinstance(payload.get("function"), str):
        log.label = payload["function"]
    probe = log.result(probe_check(invocation, target.version))
    results.append(probe)

    checked, checks = function_checks(payload, target.version)
    results.append(log.result(checked))
    if checks is None:
        return results
    pre = checks.pre
    if isinstance(probe.data, Mapping) and "schema_head" in probe.data:
        results.append(
            log.result(schema_check(probe.data, pre.schema_mismatch, uses_database=pre.uses_database))
        )
    else:
        results.append(log.result(CheckResult("schema", False, "not checked: the probe gave no versions")))

    if pre.http_health:
        failed, invocation = invoke_check(
            "http_health", clients.lambda_, target, health_event(pre.health_path), budget.checks, runtime
        )
        if failed is None and invocation is not None:
            failed = http_health_check(invocation, target.version, pre.health_path)
        results.append(log.result(failed or CheckResult("http_health", False, "no answer")))
    return results


# Each hook's entry point: the same wiring with its own checks (the logic is hook_report.run_hook's).
def run_pre_traffic(
    event: object, context: object, *, environ: Mapping[str, str], runtime: Runtime
) -> dict[str, Any]:
    log = HookLog(hook="pre_traffic")
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
