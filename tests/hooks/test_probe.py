# mypy: allow-untyped-defs, allow-incomplete-defs
# (pyproject relaxes tests.* like this, but mypy names these files without the tests. prefix)
"""The probe wrapper (lambda_src/probe/credmate_probe.py), imported in-process from a throwaway bundle folder.

Each test builds a tiny bundle in tmp_path (the wrapper copied to its root, as the bundler does), sets the
environment, and imports the wrapper under a fresh module name, which is what Lambda's init does.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import shutil
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PROBE_SRC = REPO_ROOT / "lambda_src" / "probe" / "credmate_probe.py"
_counter = itertools.count()
# What the stack sets on an API function (CREDMATE_CHECKS); every test bundle has it unless it says otherwise.
CHECKS: dict[str, Any] = {
    "pre": {"http_health": True, "health_path": "/health", "uses_database": True, "schema_mismatch": "fail"},
    "post": {"health_path": "/health", "login_path": "/api/v1/auth/login", "login_body": "json"},
}


@pytest.fixture
def bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Path]]:
    """Writes modules into a fresh bundle folder on sys.path; the modules are forgotten afterwards."""
    root = tmp_path / "bundle"
    root.mkdir()
    shutil.copyfile(PROBE_SRC, root / "credmate_probe.py")
    # Only the bundle and the standard library, as on Lambda: the repo root (on sys.path for the tests) holds
    # the CDK app's app.py, which would shadow the backend's `app` package.
    kept = [p for p in sys.path if p not in ("", ".") and Path(p).resolve() != REPO_ROOT]
    monkeypatch.setattr(sys, "path", [str(root), *kept])
    before = set(sys.modules)
    for name in (
        "CREDMATE_REAL_HANDLER",
        "SCHEMA_VERSION_READER",
        "CREDMATE_PROBE_IMPORTS",
        "DATABASE_URL",
        "COMBINED_SECRET_ARN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CREDMATE_CHECKS", json.dumps(CHECKS, separators=(",", ":")))

    def write(files: dict[str, str]) -> Path:
        for relative, text in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
            # A module of that name another test imported (the CDK app's `app`, say) would shadow the
            # bundle's: set aside until the test ends, as a fresh Lambda sandbox has none of them.
            top = relative.split("/")[0].removesuffix(".py")
            for name in [n for n in sys.modules if n == top or n.startswith(f"{top}.")]:
                monkeypatch.delitem(sys.modules, name)
        importlib.invalidate_caches()
        return root

    yield write
    for name in set(sys.modules) - before:
        del sys.modules[name]


def load_probe(root: Path) -> ModuleType:
    """Import the wrapper as Lambda's init would, under a unique name so every test gets a fresh init."""
    name = f"credmate_probe_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(name, root / "credmate_probe.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HANDLER = """
    CALLS = []
    def lambda_handler(event, context):
        CALLS.append(event)
        return {"real": True, "event": event}
"""


def test_init_imports_the_real_handler_and_passes_other_events_through(bundle, monkeypatch):
    root = bundle({"realmod.py": HANDLER})
    monkeypatch.setenv("CREDMATE_REAL_HANDLER", "realmod.lambda_handler")
    probe = load_probe(root)
    event = {"Records": [{"body": "x"}]}
    assert probe.handler(event, None) == {"real": True, "event": event}
    assert [event] == sys.modules["realmod"].CALLS


def test_probe_event_never_reaches_business_logic(bundle, monkeypatch):
    # GIVEN a bundle with build_info.json and no app.versions module
    root = bundle(
        {
            "realmod.py": HANDLER,
            "build_info.json": json.dumps({"code_version": "c0ffee", "schema_head": "0042"}),
        }
    )
    monkeypatch.setenv("CREDMATE_REAL_HANDLER", "realmod.lambda_handler")
    monkeypatch.setenv("CREDMATE_FUNCTION_LABEL", "Worker")
    probe = load_probe(root)
    # WHEN a probe event arrives
    result = probe.handler({"credmate_probe": {}}, None)
    # THEN the wrapper answers it from build_info.json and the real handler never ran
    assert sys.modules["realmod"].CALLS == []
    assert result["probe"] == "ok"
    assert (result["handler"], result["function"]) == ("realmod.lambda_handler", "Worker")
    assert result["checks"] == CHECKS and result["errors"] == []
    assert (result["code_version"], result["schema_head"], result["db_version"]) == ("c0ffee", "0042", None)
    assert result["versions_source"] == "build_info.json"


def test_versions_come_from_the_configured_function(bundle, monkeypatch):
    root = bundle(
        {
            "realmod.py": HANDLER,
            "build_info.json": json.dumps({"code_version": "c0ffee", "schema_head": "0042"}),
            "app/__init__.py": "",
            "app/versions.py": """
            def report():
                return {"code_version": "c0ffee", "schema_head": "0042", "db_version": "0041"}
        """,
        }
    )
    monkeypatch.setenv("SCHEMA_VERSION_READER", "app.versions:report")
    monkeypatch.setenv("CREDMATE_REAL_HANDLER", "realmod.lambda_handler")
    result = load_probe(root).handler({"credmate_probe": None}, None)
    assert (result["schema_head"], result["db_version"], result["versions_source"]) == (
        "0042",
        "0041",
        "app.versions:report",
    )
    assert result["probe"] == "ok"  # judging the mismatch is the hook's job (fail or warn)


def test_database_and_schema_errors_are_passed_on_without_failing_the_probe(bundle, monkeypatch):
    # GIVEN a versions function that, like the backend's, reports an unreadable database as data
    root = bundle(
        {
            "realmod.py": HANDLER,
            "build_info.json": json.dumps({"code_version": "c0ffee", "schema_head": "0042"}),
            "app/__init__.py": "",
            "app/versions.py": """
            def report():
                return {
                    "code_version": "c0ffee",
                    "schema_head": None,
                    "schema_error": "FileNotFoundError: migrations",
                    "db_version": None,
                    "db_error": "OperationalError: connection refused",
                }
        """,
        }
    )
    monkeypatch.setenv("SCHEMA_VERSION_READER", "app.versions:report")
    monkeypatch.setenv("CREDMATE_REAL_HANDLER", "realmod.lambda_handler")
    result = load_probe(root).handler({"credmate_probe": {}}, None)
    # THEN both errors reach the hook, which judges them per function; the probe itself is fine
    assert result["db_error"] == "OperationalError: connection refused"
    assert result["schema_error"] == "FileNotFoundError: migrations"
    assert (result["db_version"], result["schema_head"]) == (None, "0042")  # build_info fills the head
    assert result["probe"] == "ok"


def test_no_error_keys_when_the_versions_were_read(bundle, monkeypatch):
    root = bundle(
        {
            "realmod.py": HANDLER,
            "app/__init__.py": "",
            "app/versions.py": """
            def report():
                return {"code_version": "c0ffee", "schema_head": "0042", "db_version": "0042"}
        """,
        }
    )
    monkeypatch.setenv("SCHEMA_VERSION_READER", "app.versions:report")
    monkeypatch.setenv("CREDMATE_REAL_HANDLER", "realmod.lambda_handler")
    result = load_probe(root).handler({"credmate_probe": {}}, None)
    assert "db_error" not in result and "schema_error" not in result


def test_a_broken_versions_function_fails_the_probe(bundle, monkeypatch):
    root = bundle(
        {
            "realmod.py": HANDLER,
            "app/__init__.py": "",
            "app/versions.py": """
        import sqlalchemy_missing_for_this_test
        def report():
            return {}
    """,
        }
    )
    monkeypatch.setenv("SCHEMA_VERSION_READER", "app.versions:report")
    monkeypatch.setenv("CREDMATE_REAL_HANDLER", "realmod.lambda_handler")
    result = load_probe(root).handler({"credmate_probe": {}}, None)
    assert result["probe"] == "failed"
    assert "No module named 'sqlalchemy_missing_for_this_test'" in result["errors"][0]


def test_a_named_reader_that_is_missing_fails_the_probe(bundle, monkeypatch):
    root = bundle({"realmod.py": HANDLER})
    monkeypatch.setenv("CREDMATE_REAL_HANDLER", "realmod.lambda_handler")
    monkeypatch.setenv("SCHEMA_VERSION_READER", "app.versions:report")
    result = load_probe(root).handler({"credmate_probe": {}}, None)
    assert result["probe"] == "failed"
    assert "importing app.versions (SCHEMA_VERSION_READER) failed: ModuleNotFoundError" in result["errors"][0]


def test_the_database_url_comes_from_the_variable_else_the_secret(bundle, monkeypatch):
    monkeypatch.setenv("CREDMATE_REAL_HANDLER", "realmod.lambda_handler")
    probe = load_probe(bundle({"realmod.py": HANDLER}))
    arn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:credmate-AbCdEf"
    secrets = {arn: {"database_url": "postgres://u:p@db.internal:5432/app"}}
    assert probe.database_url({}, secrets.__getitem__) is None
    assert probe.database_url(
        {"DATABASE_URL": "sqlite:///x.db", "COMBINED_SECRET_ARN": arn}, secrets.__getitem__
    ) == ("sqlite:///x.db")
    # The secret, as the backend reads it; a Heroku-style scheme is respelled for SQLAlchemy.
    assert probe.database_url({"COMBINED_SECRET_ARN": arn}, secrets.__getitem__) == (
        "postgresql://u:p@db.internal:5432/app"
    )
    with pytest.raises(LookupError, match="has no 'database_url' key"):
        probe.database_url({"COMBINED_SECRET_ARN": arn}, lambda _arn: {"other": "x"})


def test_without_sqlalchemy_a_configured_database_is_a_db_error(bundle, monkeypatch):
    root = bundle({"realmod.py": HANDLER, "build_info.json": json.dumps({"schema_head": "0042"})})
    monkeypatch.setenv("CREDMATE_REAL_HANDLER", "realmod.lambda_handler")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@127.0.0.1:1/app")
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)  # not in this bundle
    result = load_probe(root).handler({"credmate_probe": {}}, None)
    assert result["probe"] == "ok" and result["db_version"] is None
    assert (
        "SQLAlchemy is not in the bundle" in result["db_error"]
        and "SCHEMA_VERSION_READER" in result["db_error"]
    )


LAZY_INFO = {
    "code_version": "c0ffee",
    "lazy_imports": {"Worker": ["lazy_ok", "lazy_pkg.sub"], "BackendApi": ["x_not_installed"]},
}


def test_import_sweep_is_exactly_the_recorded_list_of_the_function(bundle, monkeypatch):
    # GIVEN a bundle whose build_info.json records each function's lazily imported dependencies
    root = bundle(
        {
            "realmod.py": HANDLER,
            "lazy_ok.py": "X = 1\n",
            "lazy_pkg/__init__.py": "",
            "lazy_pkg/sub.py": "Y = 2\n",
            "build_info.json": json.dumps(LAZY_INFO),
        }
    )
    monkeypatch.setenv("CREDMATE_REAL_HANDLER", "realmod.lambda_handler")
    monkeypatch.setenv("CREDMATE_FUNCTION_LABEL", "Worker")
    monkeypatch.setenv("CREDMATE_PROBE_IMPORTS", "json")  # no longer read
    ok = load_probe(root).handler({"credmate_probe": {}}, None)
    # THEN the Worker's probe imports its list, and only it
    assert ok["probe"] == "ok" and ok["imports_checked"] == ["lazy_ok", "lazy_pkg.sub"]
    assert "lazy_pkg.sub" in sys.modules and "json" not in ok["imports_checked"]
    # AND another function's list fails where a module is missing
    monkeypatch.setenv("CREDMATE_FUNCTION_LABEL", "BackendApi")
    failed = load_probe(root).handler({"credmate_probe": {}}, None)
    assert failed["probe"] == "failed" and failed["imports_checked"] == ["x_not_installed"]
    assert failed["import_failures"] == [
        {"module": "x_not_installed", "error": "ModuleNotFoundError: No module named 'x_not_installed'"}
    ]


def test_bundle_without_function_closures_sweeps_the_whole_list(bundle, monkeypatch):
    root = bundle(
        {
            "realmod.py": HANDLER,
            "lazy_ok.py": "",
            "build_info.json": json.dumps({"lazy_imports": {"*": ["lazy_ok"]}}),
        }
    )
    monkeypatch.setenv("CREDMATE_REAL_HANDLER", "realmod.lambda_handler")
    monkeypatch.setenv("CREDMATE_FUNCTION_LABEL", "Worker")
    assert load_probe(root).handler({"credmate_probe": {}}, None)["imports_checked"] == ["lazy_ok"]


@pytest.mark.parametrize("requested", [["os; rm -rf"], ["antigravity"], "antigravity", ["lazy_ok", "this"]])
def test_module_names_in_the_event_are_never_imported(bundle, monkeypatch, requested):
    root = bundle(
        {"realmod.py": HANDLER, "lazy_ok.py": "", "build_info.json": json.dumps({"code_version": "c"})}
    )
    monkeypatch.setenv("CREDMATE_REAL_HANDLER", "realmod.lambda_handler")
    monkeypatch.delitem(sys.modules, "antigravity", raising=False)
    monkeypatch.delitem(sys.modules, "this", raising=False)
    result = load_probe(root).handler({"credmate_probe": {"imports": requested}}, None)
    assert result["imports_checked"] == [] and result["import_failures"] == []
    assert result["probe"] == "ok"
    assert not {"antigravity", "this", "lazy_ok"} & set(sys.modules)
    assert sys.modules["realmod"].CALLS == []


def test_malformed_probe_request_fails_without_running_the_handler(bundle, monkeypatch):
    root = bundle({"realmod.py": HANDLER})
    monkeypatch.setenv("CREDMATE_REAL_HANDLER", "realmod.lambda_handler")
    result = load_probe(root).handler({"credmate_probe": ["sqlalchemy"]}, None)
    assert result["probe"] == "failed" and "must be an object" in result["errors"][0]
    assert sys.modules["realmod"].CALLS == []


def test_missing_dependency_fails_init_with_module_not_found(bundle, monkeypatch):
    root = bundle({"realmod.py": "import mangum_not_here_for_test\n" + textwrap.dedent(HANDLER)})
    monkeypatch.setenv("CREDMATE_REAL_HANDLER", "realmod.lambda_handler")
    with pytest.raises(ModuleNotFoundError, match="No module named 'mangum_not_here_for_test'") as info:
        load_probe(root)
    # An ImportError keeps Lambda's Runtime.ImportModuleError signal; the message names the real module.
    assert info.value.name == "mangum_not_here_for_test"
    assert "real handler module 'realmod'" in str(info.value)


def test_broken_shared_export_fails_init_with_import_error(bundle, monkeypatch):
    root = bundle(
        {
            "shared/__init__.py": "class Other(Exception): pass\n",
            "realmod.py": "from shared import GoalValidationError\n" + textwrap.dedent(HANDLER),
        }
    )
    monkeypatch.setenv("CREDMATE_REAL_HANDLER", "realmod.lambda_handler")
    with pytest.raises(ImportError, match="cannot import name 'GoalValidationError'"):
        load_probe(root)


def test_other_init_exceptions_propagate_unchanged(bundle, monkeypatch):
    root = bundle({"realmod.py": "raise KeyError('DATABASE_URL')\n"})
    monkeypatch.setenv("CREDMATE_REAL_HANDLER", "realmod.lambda_handler")
    with pytest.raises(KeyError, match="DATABASE_URL"):
        load_probe(root)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (None, "CREDMATE_REAL_HANDLER is not set"),
        ("", "CREDMATE_REAL_HANDLER is not set"),
        ("lambda_handler", "is not a handler"),
        ("realmod.", "is not a handler"),
        ("realmod.not_there", "handler 'not_there' is missing on module 'realmod'"),
        ("realmod.CALLS", "handler 'CALLS' is not callable"),
    ],
)
def test_bad_real_handler_setting_fails_init_naming_the_variable(bundle, monkeypatch, setting: Any, message):
    root = bundle({"realmod.py": HANDLER})
    if setting is not None:
        monkeypatch.setenv("CREDMATE_REAL_HANDLER", setting)
    with pytest.raises(ImportError, match=message) as info:
        load_probe(root)
    assert "CREDMATE_REAL_HANDLER" in str(info.value)


def test_slash_handler_paths_work_as_in_lambda(bundle, monkeypatch):
    root = bundle({"pkg/__init__.py": "", "pkg/realmod.py": HANDLER})
    monkeypatch.setenv("CREDMATE_REAL_HANDLER", "pkg/realmod.lambda_handler")
    assert load_probe(root).handler({"a": 1}, None)["real"] is True


# ---------------------------------------------------------------------------------------------------------
# CREDMATE_CHECKS: what the shared hooks check for this function, and the light probe


WORKER_CHECKS: dict[str, Any] = {
    "pre": {
        "http_health": False,
        "health_path": "/health",
        "uses_database": False,
        "schema_mismatch": "warn",
    },
    "post": None,
}


def test_checks_are_reported_parsed_in_every_probe_response(bundle, monkeypatch):
    root = bundle({"realmod.py": HANDLER})
    monkeypatch.setenv("CREDMATE_REAL_HANDLER", "realmod.lambda_handler")
    monkeypatch.setenv("CREDMATE_CHECKS", json.dumps(WORKER_CHECKS))
    result = load_probe(root).handler({"credmate_probe": {}}, None)
    assert result["probe"] == "ok" and result["checks"] == WORKER_CHECKS


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "CREDMATE_CHECKS is not set"),
        ("", "CREDMATE_CHECKS is not set"),
        ("{pre:", "CREDMATE_CHECKS is not valid JSON"),
        ("[]", "CREDMATE_CHECKS must be a JSON object, got list"),
        ('{"post": null}', "CREDMATE_CHECKS 'pre' must be an object"),
        (
            json.dumps({**CHECKS, "pre": {**CHECKS["pre"], "uses_database": "yes"}}),
            "CREDMATE_CHECKS pre.uses_database='yes' must be bool",
        ),
        (
            json.dumps({**CHECKS, "pre": {k: v for k, v in CHECKS["pre"].items() if k != "schema_mismatch"}}),
            "CREDMATE_CHECKS pre.schema_mismatch is missing",
        ),
        (
            json.dumps({**CHECKS, "post": {**CHECKS["post"], "login_path": "login"}}),
            "CREDMATE_CHECKS post.login_path='login' must be a path starting with '/' or null",
        ),
        (json.dumps({**CHECKS, "post": []}), "CREDMATE_CHECKS 'post' must be null or an object"),
        (
            json.dumps({**CHECKS, "post": {**CHECKS["post"], "login_body": "xml"}}),
            "CREDMATE_CHECKS post.login_body='xml' must be json|form",
        ),
    ],
)
@pytest.mark.parametrize("request_", [{}, {"checks_only": True}])
def test_missing_or_malformed_checks_fail_the_probe_naming_the_variable(
    bundle, monkeypatch, value, expected, request_
):
    root = bundle({"realmod.py": HANDLER})
    monkeypatch.setenv("CREDMATE_REAL_HANDLER", "realmod.lambda_handler")
    if value is None:
        monkeypatch.delenv("CREDMATE_CHECKS")
    else:
        monkeypatch.setenv("CREDMATE_CHECKS", value)
    result = load_probe(root).handler({"credmate_probe": request_}, None)
    assert result["probe"] == "failed" and result["checks"] is None
    assert any(e.startswith(expected) for e in result["errors"]), result["errors"]
    assert sys.modules["realmod"].CALLS == []


def test_the_light_probe_reads_no_versions_and_imports_nothing(bundle, monkeypatch):
    # GIVEN a versions function that would record being called, and a recorded lazy import
    root = bundle(
        {
            "realmod.py": HANDLER,
            "lazy_ok.py": "",
            "build_info.json": json.dumps({"code_version": "c0ffee", "lazy_imports": {"*": ["lazy_ok"]}}),
            "app/__init__.py": "",
            "app/versions.py": """
            def report():
                raise AssertionError("the light probe must not read versions")
        """,
        }
    )
    monkeypatch.setenv("CREDMATE_REAL_HANDLER", "realmod.lambda_handler")
    monkeypatch.setenv("CREDMATE_FUNCTION_LABEL", "BackendApi")
    probe = load_probe(root)
    monkeypatch.setattr(probe, "read_build_info", lambda *_: pytest.fail("the light probe read build_info"))
    # WHEN the post-traffic hook's light probe arrives
    result = probe.handler({"credmate_probe": {"checks_only": True}}, None)
    # THEN it answers exactly what to check, and nothing was imported or read
    assert result == {
        "probe": "ok",
        "function": "BackendApi",
        "handler": "realmod.lambda_handler",
        "checks": CHECKS,
        "errors": [],
    }
    assert "lazy_ok" not in sys.modules and "app.versions" not in sys.modules
    assert sys.modules["realmod"].CALLS == []


@pytest.mark.parametrize("flag", [False, "true", 1, None])
def test_only_checks_only_true_asks_for_the_light_probe(bundle, monkeypatch, flag):
    root = bundle({"realmod.py": HANDLER, "build_info.json": json.dumps({"code_version": "c0ffee"})})
    monkeypatch.setenv("CREDMATE_REAL_HANDLER", "realmod.lambda_handler")
    result = load_probe(root).handler({"credmate_probe": {"checks_only": flag}}, None)
    assert result["code_version"] == "c0ffee" and "imports_checked" in result and result["checks"] == CHECKS
