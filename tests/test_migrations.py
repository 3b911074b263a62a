# mypy: allow-untyped-defs, allow-incomplete-defs
# (pyproject relaxes tests.* like this, but mypy names these files without the tests. prefix)
"""The deploy's migration step: the runner (lambda_src/migrate/credmate_migrate.py) against a real SQLite
database through the entry point Lambda calls, with the sample backend's real migrations; and the
MigrationStep construct's template (ordering between functions, trigger and aliases)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
RUNNER = REPO_ROOT / "lambda_src" / "migrate" / "credmate_migrate.py"
BACKEND_SRC = REPO_ROOT / "apps" / "backend-api" / "src"


def script_revisions(migrations: Path) -> list[str]:
    """The scripts' revisions, base first, read by Alembic itself (not a hard-coded list)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(migrations))
    return [s.revision for s in reversed(list(script.walk_revisions()))]


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """What the bundle root holds for the runner: the backend's source and the runner copied beside it."""
    root = tmp_path / "bundle"
    shutil.copytree(BACKEND_SRC, root, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(RUNNER, root / "credmate_migrate.py")
    return root


def invoke(
    bundle: Path, db: Path, *, event: dict[str, Any] | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """`credmate_migrate.handler(event, context)` in a fresh interpreter whose working directory is the bundle
    root, as Lambda imports a handler from /var/task."""
    code = (
        "import json, sys, credmate_migrate; "
        "print('RESULT ' + json.dumps(credmate_migrate.handler(json.loads(sys.argv[1]), None)))"
    )
    environ = {
        "PATH": "/usr/bin:/bin",
        "LAMBDA_TASK_ROOT": str(bundle),
        "DATABASE_URL": f"sqlite:///{db}",
        "PYTHONDONTWRITEBYTECODE": "1",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", code, json.dumps(event or {})],
        cwd=bundle,
        env=environ,
        capture_output=True,
        text=True,
        check=False,
    )


def log_lines(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in done.stdout.splitlines() if ln.startswith('{"migration"')]


def db_revision(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]


def write_revision(versions: Path, revision: str, down: str, upgrade_body: str) -> None:
    (versions / f"{revision}.py").write_text(
        f'"""test revision"""\n'
        "import sqlalchemy as sa\n"
        "from alembic import op\n\n"
        f"revision = {revision!r}\ndown_revision = {down!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
        f"def upgrade():\n    {upgrade_body}\n\n\n"
        "def downgrade():\n    pass\n"
    )


def test_fresh_database_is_upgraded_to_head_and_every_revision_is_logged(bundle, tmp_path):
    db = tmp_path / "app.db"
    expected = script_revisions(bundle / "migrations")
    assert len(expected) == len(list((bundle / "migrations" / "versions").glob("*.py")))

    done = invoke(bundle, db)
    assert done.returncode == 0, done.stderr
    (line,) = log_lines(done)
    assert line["migration"] == "upgraded"
    assert line["from"] == [] and line["to"] == expected[-1]
    assert line["applied"] == expected
    assert db_revision(db) == [expected[-1]]
    # The schema is really there: every table the models declare exists in the database.
    with sqlite3.connect(db) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "alembic_version" in tables and len(tables) > 1
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result["applied"] == expected


def test_database_at_head_is_a_no_op(bundle, tmp_path):
    db = tmp_path / "app.db"
    assert invoke(bundle, db).returncode == 0
    schema_before = sqlite3.connect(db).execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()

    done = invoke(bundle, db)
    assert done.returncode == 0, done.stderr
    (line,) = log_lines(done)
    head = script_revisions(bundle / "migrations")[-1]
    assert line["migration"] == "up-to-date" and line["applied"] == []
    assert line["from"] == [head] == db_revision(db)
    assert sqlite3.connect(db).execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == (
        schema_before
    )


def test_partly_migrated_database_gets_only_the_missing_revisions(bundle, tmp_path):
    """The outage's case: the database is behind the code; only the newer revisions run."""
    db = tmp_path / "app.db"
    expected = script_revisions(bundle / "migrations")
    versions = bundle / "migrations" / "versions"
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    # Migrate with the first revisions only (an older release), then deploy the full set.
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(bundle / "migrations"))
    for rev in expected[3:]:
        path = Path(script.get_revision(rev).path)
        shutil.move(str(path), hidden / path.name)
    assert len(list(versions.glob("*.py"))) == 3, "could not split the sample's revisions"
    assert invoke(bundle, db).returncode == 0
    assert db_revision(db) == [expected[2]]
    for path in hidden.iterdir():
        shutil.move(str(path), versions / path.name)

    done = invoke(bundle, db)
    assert done.returncode == 0, done.stderr
    (line,) = log_lines(done)
    assert line["from"] == [expected[2]] and line["applied"] == expected[3:]


def test_database_migrated_by_newer_code_is_never_downgraded(bundle, tmp_path):
    db = tmp_path / "app.db"
    assert invoke(bundle, db).returncode == 0
    head = db_revision(db)[0]
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'f00dcafe_from_a_newer_release'")
    schema_before = sqlite3.connect(db).execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()

    done = invoke(bundle, db)
    assert done.returncode != 0
    assert "DowngradeRefused" in done.stderr
    (line,) = log_lines(done)
    assert line["migration"] == "refused"
    assert line["database"] == ["f00dcafe_from_a_newer_release"] and line["code_head"] == head
    assert "f00dcafe_from_a_newer_release" in line["error"] and head in line["error"]
    assert "Refusing to downgrade" in line["error"]
    assert db_revision(db) == ["f00dcafe_from_a_newer_release"]
    assert sqlite3.connect(db).execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == (
        schema_before
    )


def cfn_event(request_type: str, head: str, old_head: str | None = None) -> dict[str, Any]:
    """What CDK's provider framework passes on from CloudFormation (ResponseURL elided)."""
    event: dict[str, Any] = {
        "RequestType": request_type,
        "ResponseURL": "...",
        "StackId": "arn:aws:cloudformation:eu-west-1:111122223333:stack/credmate-backend-prod/abc",
        "LogicalResourceId": "MigrationsRunAbc123",
        "ResourceType": "Custom::Migrations",
        "ResourceProperties": {"ServiceToken": "arn:aws:lambda:...", "CodeVersion": "7", "SchemaHead": head},
    }
    if old_head is not None:
        event["OldResourceProperties"] = {
            **event["ResourceProperties"],
            "CodeVersion": "8",
            "SchemaHead": old_head,
        }
        event["PhysicalResourceId"] = "credmate-migrations"
    return event


@pytest.mark.parametrize(
    ("request_type", "old_head", "kept"),
    [
        ("Update", "f00dcafe_from_the_failed_release", True),  # CloudFormation rolling that release back
        ("Update", "some_other_head", False),  # the database is ahead of both releases
        ("Update", None, False),
        ("Create", None, False),
    ],
)
def test_a_newer_database_is_kept_only_when_the_replaced_release_left_it_there(
    bundle, tmp_path, request_type, old_head, kept
):
    """CloudFormation's rollback sends the previous version of the migration function an Update with the
    previous properties, after the failed release migrated the database: failing there would leave the stack
    in UPDATE_ROLLBACK_FAILED. The event alone decides: no AWS call."""
    db = tmp_path / "app.db"
    assert invoke(bundle, db).returncode == 0
    head = db_revision(db)[0]
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'f00dcafe_from_the_failed_release'")
    # No way to reach AWS: a call would fail (and no credentials exist).
    done = invoke(
        bundle, db, event=cfn_event(request_type, head, old_head), AWS_ENDPOINT_URL="http://127.0.0.1:1"
    )
    (line,) = log_lines(done)
    if kept:
        assert done.returncode == 0, done.stderr
        assert line["migration"] == "kept-for-rollback" and line["request"] == "Update"
        assert line["database"] == ["f00dcafe_from_the_failed_release"]
        result = json.loads(done.stdout.split("RESULT ", 1)[1])
        assert result["PhysicalResourceId"] == "credmate-migrations"
    else:
        assert done.returncode != 0 and line["migration"] == "refused"
    assert db_revision(db) == ["f00dcafe_from_the_failed_release"]


def test_custom_resource_events_migrate_and_a_delete_does_nothing(bundle, tmp_path):
    db = tmp_path / "app.db"
    head = script_revisions(bundle / "migrations")[-1]
    created = invoke(bundle, db, event=cfn_event("Create", head))
    assert created.returncode == 0, created.stderr
    result = json.loads(created.stdout.split("RESULT ", 1)[1])
    assert result["PhysicalResourceId"] == "credmate-migrations" and result["migration"] == "upgraded"
    other = tmp_path / "untouched.db"
    deleted = invoke(bundle, other, event=cfn_event("Delete", head, head))
    assert deleted.returncode == 0, deleted.stderr
    assert log_lines(deleted)[0]["migration"] == "skipped" and not other.exists()


def test_a_broken_migration_fails_the_invocation(bundle, tmp_path):
    db = tmp_path / "app.db"
    assert invoke(bundle, db).returncode == 0
    head = db_revision(db)[0]
    write_revision(
        bundle / "migrations" / "versions",
        "zz_broken",
        head,
        "op.execute('ALTER TABLE table_that_does_not_exist ADD COLUMN x INTEGER')",
    )

    done = invoke(bundle, db)
    assert done.returncode != 0
    assert "table_that_does_not_exist" in done.stderr
    (line,) = log_lines(done)
    assert line["migration"] == "failed" and line["from"] == [head] and line["code_head"] == "zz_broken"
    assert "OperationalError" in line["error"]
    assert db_revision(db) == [head]


def test_a_new_migration_is_applied_and_logged(bundle, tmp_path):
    db = tmp_path / "app.db"
    assert invoke(bundle, db).returncode == 0
    head = db_revision(db)[0]
    write_revision(
        bundle / "migrations" / "versions",
        "zz_new_table",
        head,
        "op.create_table('zz_things', sa.Column('id', sa.Integer(), primary_key=True))",
    )
    done = invoke(bundle, db)
    assert done.returncode == 0, done.stderr
    (line,) = log_lines(done)
    assert line == {**line, "migration": "upgraded", "from": [head], "to": "zz_new_table"}
    assert line["applied"] == ["zz_new_table"]
    assert sqlite3.connect(db).execute("SELECT count(*) FROM zz_things").fetchone() == (0,)


def test_the_migrations_folder_is_configurable(bundle, tmp_path):
    (bundle / "db").mkdir()
    shutil.move(str(bundle / "migrations"), bundle / "db" / "schema")
    db = tmp_path / "app.db"

    missing = invoke(bundle, db)
    assert missing.returncode != 0
    assert "CREDMATE_MIGRATIONS_DIR" in missing.stderr and "no Alembic scripts" in missing.stderr
    (line,) = log_lines(missing)
    assert line["migration"] == "failed" and "no Alembic scripts" in line["error"]

    done = invoke(bundle, db, CREDMATE_MIGRATIONS_DIR="db/schema")
    assert done.returncode == 0, done.stderr
    assert log_lines(done)[0]["applied"] == script_revisions(bundle / "db" / "schema")


def test_the_url_may_come_from_a_named_variable(bundle, tmp_path):
    db = tmp_path / "other.db"
    done = invoke(
        bundle,
        tmp_path / "unused.db",
        CREDMATE_MIGRATIONS_URL_ENV="MIGRATION_DB",
        MIGRATION_DB=f"sqlite:///{db}",
    )
    assert done.returncode == 0, done.stderr
    assert db_revision(db) == [script_revisions(bundle / "migrations")[-1]]
    assert not (tmp_path / "unused.db").exists()


def test_several_heads_are_refused_before_touching_the_database(bundle, tmp_path):
    revisions = script_revisions(bundle / "migrations")
    write_revision(bundle / "migrations" / "versions", "zz_branch", revisions[-2], "pass")
    db = tmp_path / "app.db"
    done = invoke(bundle, db)
    assert done.returncode != 0
    assert "2 heads" in done.stderr and "zz_branch" in done.stderr and revisions[-1] in done.stderr
    assert not db.exists()


@pytest.mark.parametrize("setting", ["/var/task/migrations", "../migrations"])
def test_migrations_dir_must_stay_inside_the_bundle(setting, monkeypatch, tmp_path):
    sys.path.insert(0, str(RUNNER.parent))
    try:
        import credmate_migrate
    finally:
        sys.path.remove(str(RUNNER.parent))
    monkeypatch.setenv("CREDMATE_MIGRATIONS_DIR", setting)
    with pytest.raises(credmate_migrate.MigrationError, match="relative to the bundle root"):
        credmate_migrate.migrations_dir(tmp_path)


# ---------------------------------------------------------------------------------------------------------
# The construct


class StepStack:
    """Two functions with live aliases and a MigrationStep between them, synthesized with cdk-nag."""

    SECRET = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:credmate-db-AbCdEf"

    def __init__(self, outdir: Path, *, network: bool, secret: bool) -> None:
        import aws_cdk as cdk
        from aws_cdk import aws_ec2 as ec2
        from aws_cdk import aws_lambda as lambda_
        from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks

        from stacks.constructs.guarded_function import NetworkPlacement
        from stacks.constructs.migrations import MigrationStep

        app = cdk.App(outdir=str(outdir))
        stack = cdk.Stack(
            app, "MigrationTest", env=cdk.Environment(account="111122223333", region="eu-west-1")
        )
        code = lambda_.Code.from_inline("def handler(event, context):\n    return None\n")
        self.functions = []
        self.aliases = []
        for name in ("Api", "Worker"):
            fn = lambda_.Function(
                stack, name, code=code, handler="index.handler", runtime=lambda_.Runtime.PYTHON_3_11
            )
            self.functions.append(fn)
            self.aliases.append(
                lambda_.Alias(stack, f"{name}Live", alias_name="live", version=fn.current_version)
            )
        placement = None
        if network:
            vpc = ec2.Vpc.from_vpc_attributes(
                stack, "Vpc", vpc_id="vpc-0abc", availability_zones=["eu-west-1a", "eu-west-1b"]
            )
            placement = NetworkPlacement(
                vpc=vpc,
                subnets=[
                    ec2.Subnet.from_subnet_id(stack, f"S{i}", f"subnet-0{i}23456789abcdef") for i in (1, 2)
                ],
                security_groups=[
                    ec2.SecurityGroup.from_security_group_id(stack, "Sg", "sg-0123456789abcdef0")
                ],
            )
        self.step = MigrationStep(
            stack,
            "Migrations",
            code=code,
            runtime=lambda_.Runtime.PYTHON_3_11,
            architecture=lambda_.Architecture.ARM_64,
            environment={"DATABASE_URL_FROM": "secret", "COMBINED_SECRET_ARN": self.SECRET},
            timeout=cdk.Duration.minutes(5),
            log_retention_days=30,
            execute_after=self.functions,
            execute_before=self.aliases,
            migrations_dir="db/migrations",
            network=placement,
            secret_arn=self.SECRET if secret else None,
            schema_head="0009_head_of_the_test",
        )
        self.stack = stack
        # As BackendStack does: the environment key and scoped logging on everything.
        from stacks.constructs.encryption import EnvironmentKey, apply_stack_security

        apply_stack_security(stack, EnvironmentKey(stack, "DataKey", description="test environment key"))
        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app), HIPAASecurityChecks(app))
        try:
            app.synth()
        except RuntimeError as err:  # the scaffolding functions have findings of their own; files are written
            assert "ValidationFailed" in str(err), err
        self.template: dict[str, Any] = json.loads((outdir / "MigrationTest.template.json").read_text())
        report = json.loads((outdir / "validation-report.json").read_text())
        self.findings = {
            (v["ruleName"], c["constructPath"])
            for plugin in report["pluginReports"]
            for v in plugin.get("violations", [])
            for c in v["violatingConstructs"]
        }
        self.acknowledged = {
            (v["ruleName"], c["constructPath"])
            for plugin in report["pluginReports"]
            for v in plugin.get("suppressedViolations", [])
            for c in v["violatingConstructs"]
        }

    def id_of(self, construct: Any) -> str:
        return str(self.stack.resolve(construct.node.default_child.logical_id))

    @property
    def resources(self) -> dict[str, Any]:
        return self.template["Resources"]


@pytest.fixture(scope="module")
def step_stack(tmp_path_factory: pytest.TempPathFactory) -> StepStack:
    return StepStack(tmp_path_factory.mktemp("migrations-cdk-out"), network=True, secret=True)


def depends_on(resource: dict[str, Any]) -> set[str]:
    value = resource.get("DependsOn", [])
    return {value} if isinstance(value, str) else set(value)


def test_migrations_run_after_the_functions_and_before_every_alias(step_stack):
    resources = step_stack.resources
    runs = {k: v for k, v in resources.items() if v["Type"] == "Custom::Migrations"}
    (run_id,) = runs
    run = runs[run_id]
    for fn in step_stack.functions:
        assert step_stack.id_of(fn) in depends_on(run), "the migrations must wait for every function"
    for alias in step_stack.aliases:
        assert run_id in depends_on(resources[step_stack.id_of(alias)]), (
            "every live alias must wait for the migrations"
        )
    # The provider framework invokes the migration function's current version with the event itself; the
    # resource's properties carry that version (a new bundle or configuration re-runs) and the code's head.
    migrate_fn = step_stack.id_of(step_stack.step.function)
    props = run["Properties"]
    assert props["SchemaHead"] == "0009_head_of_the_test"
    version_id = props["CodeVersion"]["Fn::GetAtt"][0]
    version = resources[version_id]
    assert version["Type"] == "AWS::Lambda::Version"
    assert version["Properties"]["FunctionName"] == {"Ref": migrate_fn}
    framework = resources[props["ServiceToken"]["Fn::GetAtt"][0]]
    assert framework["Properties"]["Environment"]["Variables"]["USER_ON_EVENT_FUNCTION_ARN"] == {
        "Ref": version_id
    }
    assert "VpcConfig" not in framework["Properties"], "the framework answers CloudFormation: no VPC"
    assert "cloudformation:DescribeStacks" not in json.dumps(step_stack.template)


def test_migration_function_runs_the_runner_in_the_bundle_with_the_environment(step_stack):
    from stacks.constructs.migrations import MIGRATE_HANDLER

    props = step_stack.resources[step_stack.id_of(step_stack.step.function)]["Properties"]
    assert props["Handler"] == MIGRATE_HANDLER == "credmate_migrate.handler"
    module, attr = MIGRATE_HANDLER.rsplit(".", 1)
    assert (RUNNER.stem, attr) == (module, "handler")
    assert props["Environment"]["Variables"] == {
        "DATABASE_URL_FROM": "secret",
        "COMBINED_SECRET_ARN": StepStack.SECRET,
        "CREDMATE_MIGRATIONS_DIR": "db/migrations",
    }
    assert props["Runtime"] == "python3.11" and props["Architectures"] == ["arm64"]
    assert props["Timeout"] == 300
    assert props["VpcConfig"] == {
        "SubnetIds": ["subnet-0123456789abcdef", "subnet-0223456789abcdef"],
        "SecurityGroupIds": ["sg-0123456789abcdef0"],
    }
    invoke_config = [
        v for v in step_stack.resources.values() if v["Type"] == "AWS::Lambda::EventInvokeConfig"
    ]
    assert [c["Properties"]["MaximumRetryAttempts"] for c in invoke_config] == [0]


def test_migration_function_may_read_the_database_secret(step_stack):
    role = step_stack.stack.resolve(step_stack.step.function.role.node.default_child.logical_id)
    # Every grant in one customer-managed policy attached to the role: no inline policy on it
    policies = [
        v["Properties"]
        for v in step_stack.resources.values()
        if v["Type"] == "AWS::IAM::ManagedPolicy" and {"Ref": role} in v["Properties"]["Roles"]
    ]
    assert len(policies) == 1
    assert not [
        v
        for v in step_stack.resources.values()
        if v["Type"] == "AWS::IAM::Policy" and {"Ref": role} in v["Properties"].get("Roles", [])
    ]
    statements = [s for p in policies for s in p["PolicyDocument"]["Statement"]]
    assert any(s["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"] for s in statements)
    secret = [s for s in statements if s["Action"] == "secretsmanager:GetSecretValue"]
    assert secret == [
        {"Action": "secretsmanager:GetSecretValue", "Effect": "Allow", "Resource": StepStack.SECRET}
    ]
    # In a VPC it needs the network interface permissions CDK adds.
    managed = json.dumps(step_stack.resources[role]["Properties"]["ManagedPolicyArns"])
    assert "AWSLambdaVPCAccessExecutionRole" in managed


def test_cdk_nag_findings_of_the_step_are_all_acknowledged(step_stack):
    ours = ("MigrationTest/Migrations/",)
    assert not [f for f in step_stack.findings if f[1].startswith(ours)]
    # The scaffolding functions do have findings: the report is really read.
    assert any(path.startswith("MigrationTest/Api/") for _rule, path in step_stack.findings)
    assert ("AwsSolutions-L1", "MigrationTest/Migrations/Function/Resource") in step_stack.acknowledged


def test_without_network_or_secret(tmp_path):
    plain = StepStack(tmp_path, network=False, secret=False)
    assert not [f for f in plain.findings if f[1].startswith("MigrationTest/Migrations/")]
    props = plain.resources[plain.id_of(plain.step.function)]["Properties"]
    assert "VpcConfig" not in props
    assert "secretsmanager:GetSecretValue" not in json.dumps(plain.template)


def test_a_step_without_ordering_is_refused():
    import aws_cdk as cdk
    from aws_cdk import aws_lambda as lambda_

    from stacks.constructs.migrations import MigrationStep

    stack = cdk.Stack(cdk.App(), "Bad")
    with pytest.raises(ValueError, match="execute_before"):
        MigrationStep(
            stack,
            "Migrations",
            code=lambda_.Code.from_inline("x"),
            runtime=lambda_.Runtime.PYTHON_3_11,
            architecture=lambda_.Architecture.X86_64,
            environment={},
            timeout=cdk.Duration.minutes(5),
            log_retention_days=30,
            execute_after=[],
            execute_before=[],
        )
