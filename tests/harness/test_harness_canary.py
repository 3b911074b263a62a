# mypy: allow-untyped-defs, allow-incomplete-defs
# (pyproject relaxes tests.* like this, but mypy names these files without the tests. prefix)
"""The real pre-traffic hook against real bundles running under the Lambda Runtime Interface Emulator.

Per test: the old version (6) is the good bundle, the new version (7) is the bundle under test, both served
by a local fake of the Lambda Invoke API (tests/harness/fake_lambda.py) that the hook reaches through
AWS_ENDPOINT_URL_LAMBDA, exactly as it would reach Lambda. CodeDeploy is faked with botocore's Stubber
(GetDeployment returns an AppSpec naming CurrentVersion 6 and TargetVersion 7; the one
PutLifecycleEventHookExecutionStatus is asserted). Because version 6 is always healthy, a Failed result
also proves that the hook tested version 7.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from fake_lambda import FakeLambdaService
from harness_bundles import copy_bundle, drop_export, remove_distribution
from harness_fixtures import (
    DEPLOYMENT_ID,
    EXECUTION_ID,
    HOOK_EVENT,
    FakeContext,
    appspec_yaml,
    hook_calls,
    log_lines,
    make_client,
    pre_traffic,
)

from scripts.local.backend import FUNCTION_HANDLERS, backend_spec, function_environment
from scripts.local.emulator import LambdaEmulator
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.harness
pytest_plugins = ["harness_fixtures"]

FUNCTION = "credmate-harness-BackendApiFunction"
OLD, NEW = "6", "7"


def function_env(label: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return function_environment(label, {"ENVIRONMENT": "harness", **(extra or {})})


def checks_env(label: str, *, schema_mismatch: str, uses_database: bool) -> str:
    """The function's CREDMATE_CHECKS, as the stack sets it: what the shared hooks check for it."""
    api = label == "BackendApi"
    checks = {
        "pre": {
            "http_health": api,
            "health_path": "/health",
            "uses_database": uses_database,
            "schema_mismatch": schema_mismatch,
        },
        "post": {"health_path": "/health", "login_path": "/api/v1/auth/login", "login_body": "json"}
        if api
        else None,
    }
    return json.dumps(checks, separators=(",", ":"))


def sqlite_database(path: Path, revision: str | None) -> str:
    """A database at an Alembic revision (the backend reads it through DATABASE_URL)."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
        if revision:
            db.execute("INSERT INTO alembic_version VALUES (?)", (revision,))
    return f"sqlite:///{path}"


def schema_head(bundle: Path) -> str:
    head = json.loads((bundle / "build_info.json").read_text())["schema_head"]
    assert head, f"{bundle}/build_info.json has no schema_head: the backend must ship its migrations"
    return str(head)


@dataclass
class Outcome:
    status: str
    reported: list[str]
    qualifiers: list[str | None]
    lines: list[dict[str, Any]]

    def reason(self, check: str) -> str:
        return " | ".join(line["reason"] for line in self.lines if line["check"] == check)


@pytest.fixture
def deploy(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], rie_binary: Path
) -> Iterator[Callable[..., Outcome]]:
    """Run one CodeDeploy pre-traffic hook execution of version NEW, old and new bundles under the RIE."""
    stack = ExitStack()

    def run(
        *,
        old: Path,
        new: Path,
        label: str = "BackendApi",
        old_env: dict[str, str] | None = None,
        new_env: dict[str, str] | None = None,
        schema_mismatch: str = "fail",
        uses_database: bool = False,
    ) -> Outcome:
        checks = checks_env(label, schema_mismatch=schema_mismatch, uses_database=uses_database)
        emulators = {
            (FUNCTION, version): stack.enter_context(
                LambdaEmulator(
                    bundle=bundle,
                    environment=function_env(label, {"CREDMATE_CHECKS": checks, **(env or {})}),
                    function_name=FUNCTION,
                    rie=rie_binary,
                )
            )
            for version, bundle, env in ((OLD, old, old_env), (NEW, new, new_env))
        }
        fake = stack.enter_context(FakeLambdaService(emulators))
        codedeploy = make_client("codedeploy")
        stubber = stack.enter_context(Stubber(codedeploy))
        stubber.add_response(
            "get_deployment",
            {
                "deploymentInfo": {
                    "deploymentId": DEPLOYMENT_ID,
                    "revision": {
                        "revisionType": "AppSpecContent",
                        "appSpecContent": {"content": appspec_yaml(target=NEW, current=OLD, name=FUNCTION)},
                    },
                }
            },
            {"deploymentId": DEPLOYMENT_ID},
        )
        statuses: list[str] = []
        # One response only: a second report would fail the test (Stubber raises on an unqueued call).
        stubber.add_response(
            "put_lifecycle_event_hook_execution_status", {"lifecycleEventHookExecutionId": EXECUTION_ID}
        )
        codedeploy.meta.events.register(
            "provide-client-params.codedeploy.PutLifecycleEventHookExecutionStatus",
            lambda params, **_: statuses.append(params["status"]),
        )
        real_client = hook_calls.client
        monkeypatch.setattr(
            hook_calls,
            "client",
            lambda service, **kw: codedeploy if service == "codedeploy" else real_client(service, **kw),
        )
        for name, value in {
            "AWS_ENDPOINT_URL_LAMBDA": fake.endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }.items():
            monkeypatch.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"):
            monkeypatch.delenv(name, raising=False)
        environ = {"TARGET_ALIAS": "live"}  # the shared hook's whole environment
        capsys.readouterr()
        result = pre_traffic.run_pre_traffic(
            HOOK_EVENT, FakeContext(120_000), environ=environ, runtime=hook_calls.Runtime()
        )
        lines = log_lines(capsys.readouterr().out)
        return Outcome(result["status"], statuses, [i.qualifier for i in fake.invocations], lines)

    with stack:
        yield run


def test_good_bundle_succeeds(deploy, backend_bundle, tmp_path):
    database = sqlite_database(tmp_path / "db.sqlite", schema_head(backend_bundle))
    outcome = deploy(old=backend_bundle, new=backend_bundle, new_env={"DATABASE_URL": database})
    assert outcome.status == "Succeeded", outcome.lines
    assert outcome.reported == ["Succeeded"]
    assert outcome.qualifiers == [NEW, NEW]  # the probe, then GET /health, both on the new version only
    assert "matches the database" in outcome.reason("schema")


@pytest.mark.parametrize("label", ["Worker", "CampaignScheduler"])
def test_good_bundle_succeeds_for_the_non_http_functions(deploy, backend_bundle, label):
    outcome = deploy(old=backend_bundle, new=backend_bundle, label=label)
    assert (outcome.status, outcome.reported, outcome.qualifiers) == ("Succeeded", ["Succeeded"], [NEW])
    assert "no database version" in outcome.reason("schema")  # no DATABASE_URL: a warning only


def test_missing_dependency_fails_with_import_module_error(deploy, backend_bundle, tmp_path):
    broken = copy_bundle(backend_bundle, tmp_path / "no-mangum")
    remove_distribution(broken, "mangum")
    outcome = deploy(old=backend_bundle, new=broken)
    assert (outcome.status, outcome.reported) == ("Failed", ["Failed"])
    assert f"version {NEW} raised Runtime.ImportModuleError: " in outcome.reason("probe")
    assert "No module named 'mangum'" in outcome.reason("probe")


def test_broken_shared_export_fails_naming_it(deploy, backend_bundle, tmp_path):
    broken = copy_bundle(backend_bundle, tmp_path / "no-export")
    drop_export(broken, "goals_common", "GoalValidationError")
    outcome = deploy(old=backend_bundle, new=broken)
    assert (outcome.status, outcome.reported) == ("Failed", ["Failed"])
    assert f"version {NEW} raised Runtime.ImportModuleError: " in outcome.reason("probe")
    assert "GoalValidationError" in outcome.reason("probe")


def test_failing_health_fails(deploy, backend_bundle, tmp_path):
    # A database the function cannot open: /health must say so (and the old version is never consulted).
    unreachable = f"sqlite:///{tmp_path / 'missing-dir' / 'db.sqlite'}"
    outcome = deploy(
        old=backend_bundle, new=backend_bundle, new_env={"DATABASE_URL": unreachable}, schema_mismatch="warn"
    )
    assert (outcome.status, outcome.reported) == ("Failed", ["Failed"])
    assert "GET /health on version 7 returned 503" in outcome.reason("http_health")


def test_schema_mismatch_fails(deploy, backend_bundle, tmp_path):
    database = sqlite_database(tmp_path / "old.sqlite", "0000_an_older_revision")
    outcome = deploy(old=backend_bundle, new=backend_bundle, new_env={"DATABASE_URL": database})
    assert (outcome.status, outcome.reported) == ("Failed", ["Failed"])
    assert (
        f"code expects Alembic head {schema_head(backend_bundle)}, database is at 0000_an_older_revision"
        in (outcome.reason("schema"))
    )


def test_harness_configures_functions_as_the_catalog_does():
    catalog = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]["functions"]
    assert {name: spec["handler"] for name, spec in catalog.items()} == FUNCTION_HANDLERS
    env = function_environment("Worker")
    assert env["CREDMATE_REAL_HANDLER"] == catalog["Worker"]["handler"]
    assert env["CREDMATE_FUNCTION_LABEL"] == "Worker"


# A configured database nothing answers for: connection refused at once (port 1 on loopback).
UNREACHABLE_POSTGRES = "postgresql://user:pw@127.0.0.1:1/db"


@pytest.mark.parametrize("label", ["Worker", "CampaignScheduler"])
def test_unreachable_database_fails_a_function_that_uses_it(deploy, backend_bundle, label):
    # GIVEN the new version of a database-using function configured with a database that cannot be reached
    outcome = deploy(
        old=backend_bundle,
        new=backend_bundle,
        label=label,
        new_env={"DATABASE_URL": UNREACHABLE_POSTGRES},
        uses_database=True,
    )
    # THEN the prod hook (schema_mismatch fail) fails it, with the driver's own reason from the probe
    assert (outcome.status, outcome.reported, outcome.qualifiers) == ("Failed", ["Failed"], [NEW])
    reason = outcome.reason("schema")
    assert "database is configured but cannot be read: OperationalError" in reason, outcome.lines
    assert "127.0.0.1" in reason and "user:pw" not in reason  # the driver's words, never the URL
    assert next(line for line in outcome.lines if line["check"] == "probe")["ok"]


def test_unreachable_database_only_warns_for_a_function_that_does_not_use_it(deploy, backend_bundle):
    outcome = deploy(
        old=backend_bundle,
        new=backend_bundle,
        label="Worker",
        new_env={"DATABASE_URL": UNREACHABLE_POSTGRES},
        uses_database=False,
    )
    assert (outcome.status, outcome.reported) == ("Succeeded", ["Succeeded"])
    assert "cannot be read" in outcome.reason("schema") and "[USES_DATABASE=false]" in outcome.reason(
        "schema"
    )


# ---------------------------------------------------------------------------------------------------------
# The schema gate for a backend other than the sample: Alembic scripts in schema/, no app.versions, a real
# PostgreSQL. The probe reads alembic_version through the function's own DATABASE_URL.

ALEMBIC_BACKEND = REPO_ROOT / "tests" / "fixtures" / "alembic_backend"
ALEMBIC_HEAD = "0003_account_email_index"


@pytest.fixture(scope="module")
def alembic_bundle(backend_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The unzipped bundle, as Lambda gets it (built after the sample's: the runtime path is ready)."""
    from dataclasses import replace

    from stacks.bundling import zipwrite
    from stacks.bundling.build import build_bundle
    from stacks.bundling.spec import BundleSpec

    sample = backend_spec(ALEMBIC_BACKEND, REPO_ROOT / ".cache")
    spec = BundleSpec(
        source_dir=ALEMBIC_BACKEND / "src",
        requirements=ALEMBIC_BACKEND / "requirements.txt",
        cache_dir=REPO_ROOT / ".cache",
        extra_files=(("credmate_probe.py", REPO_ROOT / "lambda_src" / "probe" / "credmate_probe.py"),),
        handlers=(("Accounts", "service.api.handler"),),
        bytecode_modules=("credmate_probe",),
        migrations_dir="schema/versions",
    )
    built = build_bundle(replace(spec, architecture=sample.architecture, runtime=sample.runtime))
    bundle = zipwrite.extract(built.zip_path, tmp_path_factory.mktemp("alembic-bundle") / "task")
    assert schema_head(bundle) == ALEMBIC_HEAD
    assert not (bundle / "app").exists(), "this backend must not have the sample's app.versions"
    return bundle


def migrate_to(url: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_BACKEND / "src" / "schema"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, revision)


def deploy_alembic_backend(deploy, bundle: Path, url: str) -> Outcome:
    env = {"CREDMATE_REAL_HANDLER": "service.api.handler", "DATABASE_URL": url}
    return deploy(old=bundle, new=bundle, label="Worker", old_env=env, new_env=env, uses_database=True)


def test_schema_gate_of_another_backend_passes_a_database_at_head(deploy, alembic_bundle, postgres_url):
    migrate_to(postgres_url, "head")
    outcome = deploy_alembic_backend(deploy, alembic_bundle, postgres_url)
    assert (outcome.status, outcome.reported, outcome.qualifiers) == ("Succeeded", ["Succeeded"], [NEW])
    assert f"schema head {ALEMBIC_HEAD} matches the database" in outcome.reason("schema")
    probe = next(line for line in outcome.lines if line["check"] == "probe")
    assert probe["ok"]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("behind", f"code expects Alembic head {ALEMBIC_HEAD}, database is at 0002_account_email"),
        ("ahead", f"code expects Alembic head {ALEMBIC_HEAD}, database is at 0004_from_a_newer_release"),
        ("unreachable", "database is configured but cannot be read: OperationalError: connection to server"),
        ("wrong-credentials", 'password authentication failed for user "credmate"'),
        ("never-migrated", 'relation "alembic_version" does not exist'),
    ],
)
def test_schema_gate_of_another_backend_fails_its_prod_hook(
    deploy, alembic_bundle, postgres_server, postgres_url, case, expected
):
    url = postgres_url
    if case == "behind":
        migrate_to(url, "0002_account_email")
    elif case == "ahead":
        migrate_to(url, "head")
        postgres_server.execute(
            "UPDATE alembic_version SET version_num = '0004_from_a_newer_release'", url.rsplit("/", 1)[1]
        )
    elif case == "unreachable":
        url = "postgresql://credmate:pw@127.0.0.1:1/app"  # nothing listens on port 1
    elif case == "wrong-credentials":
        migrate_to(url, "head")
        url = postgres_server.url(url.rsplit("/", 1)[1], password="not-the-password")
    outcome = deploy_alembic_backend(deploy, alembic_bundle, url)
    assert (outcome.status, outcome.reported, outcome.qualifiers) == ("Failed", ["Failed"], [NEW])
    assert expected in outcome.reason("schema"), outcome.lines
    assert "not-the-password" not in json.dumps(outcome.lines)
