# mypy: allow-untyped-defs, allow-incomplete-defs
# (pyproject relaxes tests.* like this, but mypy names these files without the tests. prefix)
"""How the real runtime (awslambdaric under aws-lambda-rie) reports the probe wrapper's init failures.

These pin the behaviour documented in lambda_src/probe/credmate_probe.py: failures that Lambda reports as
Runtime.ImportModuleError without the wrapper still are with it, and the wrapper's own configuration errors
are reported the same way (not as Runtime.Unknown), so the init-error alarm and the hook catch them all.
Tiny stdlib-only bundles: no backend needed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from harness_fixtures import REPO_ROOT

from scripts.local.emulator import LambdaEmulator

pytestmark = pytest.mark.harness
pytest_plugins = ["harness_fixtures"]

HANDLER = "def lambda_handler(event, context):\n    return {'real': True}\n"


def tiny_bundle(root: Path, modules: dict[str, str]) -> Path:
    root.mkdir()
    shutil.copyfile(REPO_ROOT / "lambda_src" / "probe" / "credmate_probe.py", root / "credmate_probe.py")
    for name, text in modules.items():
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize(
    ("modules", "env", "error_type", "message"),
    [
        (
            {"real.py": "import mangum_is_missing\n" + HANDLER},
            {"CREDMATE_REAL_HANDLER": "real.lambda_handler"},
            "Runtime.ImportModuleError",
            "Unable to import module 'credmate_probe': No module named 'mangum_is_missing' (while importing "
            "the real handler module 'real' named in CREDMATE_REAL_HANDLER)",
        ),
        ({"real.py": HANDLER}, {}, "Runtime.ImportModuleError", "CREDMATE_REAL_HANDLER is not set"),
        (
            {"real.py": HANDLER},
            {"CREDMATE_REAL_HANDLER": "real.nope"},
            "Runtime.ImportModuleError",
            "handler 'nope' is missing on module 'real'",
        ),
        (
            {"real.py": "def broken(:\n"},
            {"CREDMATE_REAL_HANDLER": "real.lambda_handler"},
            "Runtime.UserCodeSyntaxError",
            "Syntax error in module 'credmate_probe'",
        ),
        (
            {"real.py": "import os\nos.environ['DATABASE_URL']\n"},
            {"CREDMATE_REAL_HANDLER": "real.lambda_handler"},
            "KeyError",
            "DATABASE_URL",
        ),
    ],
    ids=["missing-dependency", "no-setting", "missing-attribute", "syntax-error", "other-exception"],
)
def test_init_failures_as_the_runtime_reports_them(tmp_path, rie_binary, modules, env, error_type, message):
    bundle = tiny_bundle(tmp_path / "bundle", modules)
    with LambdaEmulator(bundle=bundle, environment=env, rie=rie_binary) as function:
        result = function.invoke({"credmate_probe": {}})
    assert result.function_error
    assert result.payload["errorType"] == error_type
    assert message in result.payload["errorMessage"]


def test_probe_and_pass_through_under_the_runtime(tmp_path, rie_binary):
    # The sweep imports what the bundler recorded for the function, never names from the event
    lazy = json.dumps({"lazy_imports": {"Worker": ["json", "not_installed_anywhere"]}})
    bundle = tiny_bundle(tmp_path / "bundle", {"real.py": HANDLER, "build_info.json": lazy})
    with LambdaEmulator(
        bundle=bundle,
        environment={"CREDMATE_REAL_HANDLER": "real.lambda_handler", "CREDMATE_FUNCTION_LABEL": "Worker"},
        rie=rie_binary,
    ) as function:
        probe = function.invoke({"credmate_probe": {"imports": ["antigravity"]}})
        passed = function.invoke({"Records": []})
    assert not probe.function_error and probe.payload["probe"] == "failed"
    assert probe.payload["import_failures"] == [
        {
            "module": "not_installed_anywhere",
            "error": "ModuleNotFoundError: No module named 'not_installed_anywhere'",
        }
    ]
    assert passed.payload == {"real": True}


def test_local_invoke_script(tmp_path, rie_binary, capsys):
    from scripts.local import invoke as local_invoke

    bundle = tiny_bundle(tmp_path / "bundle", {"worker.py": HANDLER})
    event = tmp_path / "event.json"
    event.write_text('{"Records": []}')
    assert local_invoke.main(["--function", "Worker", "--event", str(event), "--bundle", str(bundle)]) == 0
    assert json.loads(capsys.readouterr().out) == {"real": True}
    # BackendApi's handler module (handler.py) is not in this bundle: init fails, exit code 1
    (bundle / "handler.py").write_text("import mangum_is_missing\n")
    assert local_invoke.main(["--function", "BackendApi", "--probe", "--bundle", str(bundle)]) == 1
    assert json.loads(capsys.readouterr().out)["errorType"] == "Runtime.ImportModuleError"
    assert local_invoke.main(["--function", "Worker", "--event", str(tmp_path / "nope.json")]) == 2


def test_light_probe_under_the_runtime(tmp_path, rie_binary):
    # The post-traffic hook's light probe: CREDMATE_CHECKS parsed, nothing read or imported
    checks = {
        "pre": {
            "http_health": False,
            "health_path": "/health",
            "uses_database": True,
            "schema_mismatch": "warn",
        },
        "post": None,
    }
    lazy = json.dumps({"lazy_imports": {"Worker": ["not_installed_anywhere"]}})
    bundle = tiny_bundle(tmp_path / "bundle", {"real.py": HANDLER, "build_info.json": lazy})
    environment = {
        "CREDMATE_REAL_HANDLER": "real.lambda_handler",
        "CREDMATE_FUNCTION_LABEL": "Worker",
        "CREDMATE_CHECKS": json.dumps(checks, separators=(",", ":")),
    }
    with LambdaEmulator(bundle=bundle, environment=environment, rie=rie_binary) as function:
        light = function.invoke({"credmate_probe": {"checks_only": True}})
        full = function.invoke({"credmate_probe": {}})
    assert not light.function_error and light.payload == {
        "probe": "ok",
        "function": "Worker",
        "handler": "real.lambda_handler",
        "checks": checks,
        "errors": [],
    }
    # the full probe reports the same checks, and still sweeps (and fails on) the recorded import
    assert full.payload["checks"] == checks and full.payload["probe"] == "failed"
