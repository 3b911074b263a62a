"""Probe wrapper: the Lambda handler of every backend function (`credmate_probe.handler`).

Like APM vendors' Lambda wrappers, this module is set as the function's handler and names the real one in
the environment (`CREDMATE_REAL_HANDLER=handler.lambda_handler`). The bundler copies it to the bundle root.

* **Init** (module import): the real handler's module is imported here, with `importlib.import_module`,
  exactly as Lambda's runtime imports a handler. So a bundle that cannot import fails *init*, as it would
  without the wrapper. Observed with awslambdaric 4.2.2 under aws-lambda-rie (tests/harness): an
  `ImportError` raised while importing this module is reported as `Runtime.ImportModuleError` with the
  message `Unable to import module 'credmate_probe': No module named 'mangum' ...`; a `SyntaxError` as
  `Runtime.UserCodeSyntaxError`; any other exception with its own class as errorType (`KeyError`, ...), as
  for an unwrapped handler. Two failures would change their signal because of the wrapper: a missing
  handler attribute (Lambda: `Runtime.HandlerNotFound`, here it would be an `AttributeError`) and a missing
  or malformed `CREDMATE_REAL_HANDLER`. Both raise `ProbeConfigError`, an `ImportError`, so they surface as
  `Runtime.ImportModuleError` and trip the same init-error alarm, with a message naming what to fix.
* **Probe event** `{"credmate_probe": {}}` is answered here and never reaches business logic: handler, code
  version, schema head and database schema version, plus an import sweep of exactly the dependency modules
  this function's code imports lazily (inside functions), which init does not prove: the list the bundler's
  import closure recorded in build_info.json's `lazy_imports` under `CREDMATE_FUNCTION_LABEL`. Versions,
  for any backend that migrates with Alembic: `code_version` and `schema_head` from build_info.json (the
  bundler reads the head from the bundle's migration scripts), `db_version` from the database's
  `alembic_version` table, read with the bundle's SQLAlchemy through the connection the function itself
  gets: `DATABASE_URL`, else the `database_url` key of the secret in `COMBINED_SECRET_ARN`. Neither set:
  no database configured (no `db_version`, no `db_error`). Unreadable (unreachable, wrong credentials, no
  version table, no SQLAlchemy in the bundle): `db_error`, the driver's first line, never the URL. Only a
  backend that records its schema some other way names its own reader, `module:function` returning a dict
  like the one above, in `SCHEMA_VERSION_READER` (the catalog's per-function `environment`). Nothing else
  is imported: module names in the event are ignored, so a probe can never be made to import arbitrary
  code. Only direct `lambda:Invoke` can send this shape: API Gateway, SQS and EventBridge events never carry
  a top-level `credmate_probe` key.
* **What the hooks check** comes from the function itself: `CREDMATE_CHECKS`, compact JSON
  `{"pre": {"http_health": bool, "health_path": "/...", "uses_database": bool, "schema_mismatch":
  "fail"|"warn"}, "post": null | {"health_path": "/...", "login_path": "/..."|null, "login_body":
  "json"|"form"}}`, is returned parsed as `checks` in every probe response, so one shared pre-traffic and one
  shared post-traffic hook serve every function. Missing or malformed: `checks` is null and `errors` names
  the variable (the probe is "failed").
* **Light probe** `{"credmate_probe": {"checks_only": true}}` (the post-traffic hook's) answers only
  `probe`, `function`, `handler`, `checks` and `errors`: no versions or database read, no import sweep.
* **Every other event** goes to the real handler unchanged.

Standard library only at import: this file runs inside every bundle, before anything else is known to
import. SQLAlchemy (and boto3, for the secret) are imported only to answer a probe with a database.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

REAL_HANDLER_ENV = "CREDMATE_REAL_HANDLER"
READER_ENV = "SCHEMA_VERSION_READER"
LABEL_ENV = "CREDMATE_FUNCTION_LABEL"
CHECKS_ENV = "CREDMATE_CHECKS"
DATABASE_URL_ENV = "DATABASE_URL"
SECRET_ARN_ENV = "COMBINED_SECRET_ARN"
SECRET_URL_KEY = "database_url"
VERSION_TABLE = "alembic_version"
CONNECT_TIMEOUT_S = 5
ERROR_LIMIT = 300
# Keys a reader sets when a version cannot be read, passed on as given.
VERSION_ERROR_KEYS = ("db_error", "schema_error")
PROBE_KEY = "credmate_probe"
BUILD_INFO = Path(__file__).resolve().with_name("build_info.json")

_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")

Handler = Callable[[Any, Any], Any]


class ProbeConfigError(ImportError):
    """The wrapper's configuration is wrong. An ImportError, so Lambda reports Runtime.ImportModuleError."""


def parse_handler_setting(value: str | None) -> tuple[str, str]:
    """Split `module.attr` (Lambda's handler syntax, `dir/module.attr` allowed) into module and attribute."""
    if value is None or not value.strip():
        raise ProbeConfigError(
            f"environment variable {REAL_HANDLER_ENV} is not set: it must name the real handler as "
            "'module.function' (e.g. handler.lambda_handler)"
        )
    module, _, attr = value.strip().rpartition(".")
    module = module.replace("/", ".")
    if not module or not _DOTTED.match(module) or not attr.isidentifier():
        raise ProbeConfigError(
            f"environment variable {REAL_HANDLER_ENV}={value!r} is not a handler: expected "
            "'module.function' (e.g. handler.lambda_handler)"
        )
    return module, attr


def load_real_handler(setting: str | None) -> Handler:
    """Import the real handler as Lambda's runtime would; import errors propagate unchanged."""
    module_name, attr = parse_handler_setting(setting)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Same type and the same "No module named 'x'" text (metric filters match it); the suffix says which
        # handler needed it, since Lambda names this wrapper module in its message.
        raise ModuleNotFoundError(
            f"{exc} (while importing the real handler module '{module_name}' named in {REAL_HANDLER_ENV})",
            name=exc.name,
            path=exc.path,
        ) from exc
    handler = getattr(module, attr, None)
    if handler is None or not callable(handler):
        what = "is not callable" if handler is not None else "is missing"
        raise ProbeConfigError(
            f"handler '{attr}' {what} on module '{module_name}' ({REAL_HANDLER_ENV}={setting}): define it or "
            "fix the function's CREDMATE_REAL_HANDLER setting"
        )
    return handler


def is_probe_event(event: object) -> bool:
    return isinstance(event, dict) and PROBE_KEY in event


def recorded_imports(build_info: Mapping[str, Any], label: str | None) -> list[str]:
    """The lazily imported dependency modules build_info.json records for this function.

    Keyed by function label; a bundle built without per-function closures records them all under "*"."""
    recorded = build_info.get("lazy_imports")
    if not isinstance(recorded, Mapping):
        return []
    modules = recorded.get(label or "", recorded.get("*", []))
    return [m for m in modules if isinstance(m, str)] if isinstance(modules, list) else []


def import_sweep(modules: Iterable[str]) -> tuple[list[str], list[dict[str, str]]]:
    """Import each module; return the ones checked and {"module", "error"} for each that failed."""
    checked: list[str] = []
    failures: list[dict[str, str]] = []
    for name in dict.fromkeys(modules):  # de-duplicated, order kept
        checked.append(name)
        if not _DOTTED.match(name):
            failures.append({"module": name, "error": "ValueError: not a module name"})
            continue
        try:
            importlib.import_module(name)
        except BaseException as exc:  # an import may raise anything, SystemExit included
            failures.append({"module": name, "error": f"{type(exc).__name__}: {exc}"})
    return checked, failures


def read_build_info(path: Path = BUILD_INFO) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def describe_error(exc: BaseException) -> str:
    """One short line; for driver errors the driver's own message (no SQL, no connection parameters)."""
    source = getattr(exc, "orig", None) or exc
    lines = str(source).strip().splitlines()
    return f"{type(source).__name__}: {lines[0] if lines else ''}".strip()[:ERROR_LIMIT]


def fetch_secret(arn: str) -> Mapping[str, Any]:
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=3, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"})
    raw = boto3.client("secretsmanager", config=config).get_secret_value(SecretId=arn).get("SecretString")
    data = json.loads(raw) if isinstance(raw, str) else None
    if not isinstance(data, Mapping):
        raise ValueError(f"secret {arn} ({SECRET_ARN_ENV}) is not a JSON object")
    return data


def database_url(
    environ: Mapping[str, str], secret: Callable[[str], Mapping[str, Any]] = fetch_secret
) -> str | None:
    """The function's own database URL: DATABASE_URL, else the secret's database_url; None if neither."""
    url = environ.get(DATABASE_URL_ENV, "").strip()
    arn = environ.get(SECRET_ARN_ENV, "").strip()
    if not url and arn:
        value = secret(arn).get(SECRET_URL_KEY)
        if not isinstance(value, str) or not value.strip():
            raise LookupError(f"secret {arn} ({SECRET_ARN_ENV}) has no {SECRET_URL_KEY!r} key")
        url = value.strip()
    if not url:
        return None
    # Heroku-style URLs are common in secrets; SQLAlchemy 2 only accepts the postgresql:// spelling.
    return "postgresql://" + url.removeprefix("postgres://") if url.startswith("postgres://") else url


def read_alembic_version(url: str) -> str:
    """The database's Alembic revision(s), comma-joined; raises when they cannot be read."""
    try:
        import sqlalchemy
        from sqlalchemy.pool import NullPool
    except ImportError as exc:
        raise ImportError(
            f"SQLAlchemy is not in the bundle ({exc}): the probe reads {VERSION_TABLE} with it; name a "
            f"reader in {READER_ENV} for a backend without it"
        ) from None
    parsed = sqlalchemy.engine.make_url(url)
    timeout = {"connect_timeout": CONNECT_TIMEOUT_S} if parsed.get_backend_name() == "postgresql" else {}
    engine = sqlalchemy.create_engine(parsed, poolclass=NullPool, connect_args=timeout)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sqlalchemy.text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
    finally:
        engine.dispose()
    if not rows:
        raise LookupError(f"{VERSION_TABLE} is empty: the database was never migrated")
    return ",".join(sorted(str(row[0]) for row in rows))


def default_versions(environ: Mapping[str, str], versions: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """build_info.json's versions plus the database's alembic_version (or db_error)."""
    try:
        url = database_url(environ)
    except Exception as exc:  # the secret: unreachable, denied, malformed
        return {**versions, "db_error": describe_error(exc)}, VERSION_TABLE
    if url is None:
        return versions, "build_info.json"
    try:
        return {**versions, "db_version": read_alembic_version(url)}, VERSION_TABLE
    except Exception as exc:
        return {**versions, "db_error": describe_error(exc)}, VERSION_TABLE


def read_versions(
    environ: Mapping[str, str], build_info: Mapping[str, Any]
) -> tuple[dict[str, Any], str, str | None]:
    """(versions, source, error): the default reader, or the one named in SCHEMA_VERSION_READER.

    build_info.json fills what a reader does not report; its `db_error`/`schema_error` (why a version could
    not be read) are passed on as reported, for the hook to judge per function.
    """
    versions: dict[str, Any] = {
        "code_version": build_info.get("code_version"),
        "schema_head": build_info.get("schema_head"),
        "db_version": None,
    }
    setting = environ.get(READER_ENV, "").strip()
    if not setting:
        found, source = default_versions(environ, versions)
        return found, source, None
    module_name, sep, attr = setting.partition(":")
    if not sep or not _DOTTED.match(module_name) or not attr.isidentifier():
        return (
            versions,
            setting,
            f"{READER_ENV}={setting!r} is not 'module:function' (e.g. app.versions:report)",
        )
    try:
        module = importlib.import_module(module_name)
    except BaseException as exc:
        return (
            versions,
            setting,
            f"importing {module_name} ({READER_ENV}) failed: {type(exc).__name__}: {exc}",
        )
    report = getattr(module, attr, None)
    if not callable(report):
        return versions, setting, f"{module_name} has no function {attr} ({READER_ENV}={setting})"
    try:
        reported = report()
    except BaseException as exc:
        return versions, setting, f"{setting}() raised {type(exc).__name__}: {exc}"
    if not isinstance(reported, Mapping):
        return versions, setting, f"{setting}() returned {type(reported).__name__}, expected a dict"
    for key in ("code_version", "schema_head", "db_version", *VERSION_ERROR_KEYS):
        if reported.get(key) is not None:
            versions[key] = str(reported[key])
    return versions, setting, None


# CREDMATE_CHECKS: each section's keys and what each value must be.
_CHECK_FIELDS: dict[str, dict[str, str]] = {
    "pre": {
        "http_health": "bool",
        "health_path": "path",
        "uses_database": "bool",
        "schema_mismatch": "fail|warn",
    },
    "post": {"health_path": "path", "login_path": "path or null", "login_body": "json|form"},
}


def _check_value_ok(value: Any, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "path":
        return isinstance(value, str) and value.startswith("/")
    if kind == "path or null":
        return value is None or (isinstance(value, str) and value.startswith("/"))
    return isinstance(value, str) and value in kind.split("|")


def read_checks(environ: Mapping[str, str]) -> tuple[dict[str, Any] | None, str | None]:
    """(checks, error): CREDMATE_CHECKS parsed and validated, or None and why it is unusable."""
    raw = environ.get(CHECKS_ENV)
    if raw is None or not raw.strip():
        return None, f"{CHECKS_ENV} is not set: the hooks cannot tell what to check for this function"
    try:
        checks = json.loads(raw)
    except ValueError as exc:
        return None, f"{CHECKS_ENV} is not valid JSON: {exc}"
    if not isinstance(checks, dict):
        return None, f"{CHECKS_ENV} must be a JSON object, got {type(checks).__name__}"
    for section, fields in _CHECK_FIELDS.items():
        value = checks.get(section)
        if section == "post" and value is None:
            continue
        if not isinstance(value, dict):
            what = "an object" if section == "pre" else "null or an object"
            return None, f"{CHECKS_ENV} '{section}' must be {what}"
        for key, kind in fields.items():
            if key not in value:
                return None, f"{CHECKS_ENV} {section}.{key} is missing"
            if not _check_value_ok(value[key], kind):
                expected = "a path starting with '/'" if kind.startswith("path") else kind
                expected += " or null" if kind == "path or null" else ""
                return None, f"{CHECKS_ENV} {section}.{key}={value[key]!r} must be {expected}"
    return checks, None


def answer_probe(
    event: Mapping[str, Any], environ: Mapping[str, str], handler_setting: str
) -> dict[str, Any]:
    """The probe response. Never raises: a broken probe must be a readable "failed", not a FunctionError."""
    errors: list[str] = []
    request = event.get(PROBE_KEY)
    if request is not None and not isinstance(request, Mapping):
        errors.append(f"probe event's '{PROBE_KEY}' must be an object, got {type(request).__name__}")
    checks, checks_error = read_checks(environ)
    if checks_error:
        errors.append(checks_error)
    if isinstance(request, Mapping) and request.get("checks_only") is True:
        # The light probe: what to check, without reading versions or importing anything.
        return {
            "probe": "failed" if errors else "ok",
            "function": environ.get(LABEL_ENV),
            "handler": handler_setting,
            "checks": checks,
            "errors": errors,
        }
    build_info = read_build_info()
    versions, source, version_error = read_versions(environ, build_info)
    if version_error:
        errors.append(version_error)
    checked, failures = import_sweep(recorded_imports(build_info, environ.get(LABEL_ENV)))
    errors.extend(f"import {f['module']}: {f['error']}" for f in failures)
    return {
        "probe": "failed" if errors else "ok",
        "handler": handler_setting,
        "function": environ.get(LABEL_ENV),
        "checks": checks,
        **versions,
        "versions_source": source,
        "imports_checked": checked,
        "import_failures": failures,
        "errors": errors,
        "python": ".".join(map(str, sys.version_info[:3])),
    }


# Lambda init: fails exactly when the real handler fails to import.
_HANDLER_SETTING = os.environ.get(REAL_HANDLER_ENV)
_REAL_HANDLER = load_real_handler(_HANDLER_SETTING)


def handler(event: Any, context: Any) -> Any:
    if is_probe_event(event):
        result = answer_probe(event, os.environ, _HANDLER_SETTING or "")
        print(json.dumps({"credmate_probe": result["probe"], "errors": result["errors"]}), flush=True)
        return result
    return _REAL_HANDLER(event, context)
