"""Serve a synthesized environment's REST API on 127.0.0.1, each route running its real bundle. No Docker.

    python -m scripts.local.api [--env staging] [--port 3000] [--watch] [-c backend_root=PATH]
    make local-api [ENV=staging] [PORT=3000] [WATCH=1]

What API Gateway would do, read from `cdk.out/<stack>.template.json` (synthesized first, as `make synth`
does, unless --no-synth): the stage prefix (`/v1`), the resource tree (`{proxy+}`, `{param}`, literal
paths) and methods (ANY or one verb), which Lambda function each AWS_PROXY integration invokes (through its
alias or version), MOCK integrations (the CORS preflight: status and header values of the integration
response, with CDK's multi-origin override template), BinaryMediaTypes and stage variables. Each request
becomes the REST proxy event API Gateway sends, goes to the function's built bundle under AWS's Lambda
Runtime Interface Emulator and awslambdaric (one warm runtime per function), and the proxy response comes
back as API Gateway returns it. A function error or a malformed proxy response answers 502
{"message": "Internal server error"}, an unknown route 403 {"message": "Missing Authentication Token"}, a
path outside the stage 403 {"message": "Forbidden"}, an integration running past 29 s 504.

The database, by default: DATABASE_URL when set (or --database-url), else a local PostgreSQL whose data
persists in .cache/local-postgres/<env>/ (scripts/local/database.py; `make clean` removes it), migrated to
head with the deploy's own runner before the first request, run from the served bundle under its runtime's
Python (the backend's own dependencies, as in the deploy), with the environment's migrations.directory.
The functions get its DATABASE_URL and a JWT_SECRET for this run (unless --set-env gives them).
`make local-user EMAIL=.. PASSWORD=..` creates a user that can log in. --no-database serves without one
(every login then answers 401). Ctrl-C stops the emulators and the PostgreSQL server this started.

--watch polls the backend's source (and cdk.json, requirements) for changes. A source edit is rebuilt by
the bundler directly and served by new runtimes, usually within a second (scripts/local/edit_loop.py: a bundle
that fails answers its error, never the previous code); any other change synthesizes again, and a synth
that fails keeps the previous deployment serving.

Deliberate differences from API Gateway: a request body that is not UTF-8 is sent base64-encoded even when
its Content-Type is not a binary media type (the log says API Gateway would corrupt it), and a base64
response body is always decoded (the log says when API Gateway would return the base64 text instead).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from scripts.local.database import DEFAULT_ROOT, local_database, migrate
from scripts.local.edit_loop import EditLoop, source_only
from scripts.local.environment import environment_config
from scripts.local.gateway import LOOPBACK, Deployment, Gateway, make_server
from scripts.local.postgres import PostgresError
from scripts.local.routes import load_api
from scripts.local.stack import (
    DEFAULT_CACHE,
    REPO_ROOT,
    LocalFunction,
    LocalStackError,
    Log,
    Runtimes,
    Template,
    backend_root,
    load_functions,
    override_code,
    parse_context,
    parse_env,
    runtime_python,
    stderr_log,
    synthesize,
)
from stacks.bundling import manifest
from stacks.bundling.spec import BundlingError, source_root


@dataclass(frozen=True)
class Options:
    stack: str
    outdir: Path
    context: dict[str, str]
    api: str | None
    code: tuple[str, ...]
    env: dict[str, str]
    cache_dir: Path
    environment: str = "staging"  # the cdk.json environment (what --watch rebuilds without a synth)


def load_deployment(options: Options, *, log: Log = stderr_log) -> Deployment:
    template = Template(options.outdir / f"{options.stack}.template.json")
    api = load_api(template, options.api)
    functions: dict[str, LocalFunction] = load_functions(template, api.functions, options.cache_dir)
    override_code(functions, template, options.code)
    for skipped in api.skipped:
        log(f"[local-api] skipped {skipped}")
    return Deployment(
        api=api, runtimes=Runtimes(functions, extra_env=options.env, log=log), template=template
    )


def describe(deployment: Deployment, base_url: str) -> list[str]:
    api = deployment.api
    lines = []
    for resource in sorted(api.resources, key=lambda r: r.path):
        for method, integration in sorted(resource.methods.items()):
            target = (
                deployment.runtimes.function(integration.function).label
                if integration.function
                else integration.kind.upper()
            )
            lines.append(f"  {method:7} {base_url}{resource.path.rstrip('/') or '/'} -> {target}")
    return lines


def watched_inputs(options: Options, edits: EditLoop | None) -> list[Path]:
    """What a rebuild depends on besides the source folder: cdk.json, the dependency manifest and its lock,
    and the local packages it installs (their folders). Resolved again after each rebuild: a manifest edit
    may add or drop a local package."""
    root = backend_root(options.context)
    inputs = [REPO_ROOT / "cdk.json"]
    with contextlib.suppress(BundlingError):  # no manifest: the rebuild says so
        found = manifest.find_manifest(root)
        inputs += [found.primary, *([found.lock] if found.lock else [])]
    if edits is not None:
        with contextlib.suppress(BundlingError):
            inputs += [package.source for package in manifest.resolve(edits.spec).local]
    return inputs


def watched_files(options: Options, inputs: Sequence[Path] = ()) -> dict[Path, float]:
    root = backend_root(options.context)
    files: list[Path] = []
    for path in [source_root(root), *inputs]:
        if path.is_dir():
            files += [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        elif path.is_file():
            files.append(path)
    stamps: dict[Path, float] = {}
    for path in files:
        try:
            stamps[path] = path.stat().st_mtime
        except OSError:
            continue
    return stamps


def watch(gateway: Gateway, options: Options, stop: threading.Event, *, interval: float = 0.02) -> None:
    log = gateway.log
    root = backend_root(options.context)
    log(f"[local-api] watching {source_root(root)} (and the manifest, its local packages, cdk.json)")
    edits = (
        EditLoop(options.context, options.environment, options.cache_dir, log) if not options.code else None
    )
    inputs = watched_inputs(options, edits)
    last = watched_files(options, inputs)
    while not stop.wait(interval):
        current = watched_files(options, inputs)
        if current == last:
            continue
        changed = sorted({*current.keys() ^ last.keys(), *(p for p in current if last.get(p) != current[p])})
        # Editors write in several steps: wait until the tree is quiet before rebuilding.
        while not stop.wait(interval):
            settled = watched_files(options, inputs)
            if settled == current:
                break
            current = settled
        last = current
        shown = ", ".join(
            str(p.relative_to(REPO_ROOT) if p.is_relative_to(REPO_ROOT) else p) for p in changed[:5]
        )
        log(f"[local-api] change detected ({shown}{' ...' if len(changed) > 5 else ''}): rebuilding")
        if edits is not None and source_only(changed, options.context, inputs):
            old = gateway.deployment
            served = edits.rebuild(old.runtimes, sorted(old.api.functions), options.env)
            gateway.replace(
                replace(old, runtimes=served.runtimes, failures=served.failures, answered=served.answered)
            )
            continue
        try:
            synthesize(options.outdir, options.context, log=log)
            deployment = load_deployment(options, log=log)
        except LocalStackError as exc:
            log(f"[local-api] rebuild FAILED; still serving the previous bundle:\n{exc}")
            continue
        gateway.replace(deployment)
        if edits is not None:  # the catalog or the requirements may have changed
            edits.close()
            edits = EditLoop(options.context, options.environment, options.cache_dir, log)
        inputs = watched_inputs(options, edits)
        last = watched_files(options, inputs)
        log("[local-api] reloaded: new bundle verified; runtimes restart on their next request")
    if edits is not None:
        edits.close()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--env", dest="environment", default="staging", help="environment name (cdk.json)")
    parser.add_argument("--stack", help="stack to serve (default credmate-backend-<env>)")
    parser.add_argument("--port", type=int, default=3000, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--cdk-out", type=Path, default=REPO_ROOT / "cdk.out", help="cloud assembly folder")
    parser.add_argument("--no-synth", action="store_true", help="serve the assembly as it is")
    parser.add_argument("--watch", action="store_true", help="rebuild and reload when the backend changes")
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--api", help="logical ID of the REST API when the stack has several")
    parser.add_argument(
        "--code",
        action="append",
        default=[],
        metavar="FUNCTION=FOLDER",
        help="run this unzipped bundle instead",
    )
    parser.add_argument(
        "--set-env", action="append", default=[], metavar="NAME=VALUE", help="extra function environment"
    )
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    database = parser.add_mutually_exclusive_group()
    database.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="use this database (default $DATABASE_URL)",
    )
    database.add_argument("--no-database", action="store_true", help="serve without a database")
    parser.add_argument(
        "--data-dir", type=Path, help="local PostgreSQL folder (default .cache/local-postgres/ENV)"
    )
    parser.add_argument(
        "--migrations-dir",
        help="Alembic scripts under the source (default: the environment's migrations.directory)",
    )
    return parser.parse_args(argv)


def with_database(
    args: argparse.Namespace, options: Options, resources: contextlib.ExitStack
) -> dict[str, str]:
    """DATABASE_URL (a local server started into `resources`) and a JWT secret."""
    env = dict(options.env)
    env.setdefault("JWT_SECRET", secrets.token_urlsafe(32))  # tokens of this run only
    if args.no_database:
        return env
    folder = args.data_dir or DEFAULT_ROOT / args.environment
    url = env.get("DATABASE_URL") or resources.enter_context(
        local_database(folder, url=args.database_url, log=stderr_log)
    )
    return {**env, "DATABASE_URL": url}


def migrate_to_head(args: argparse.Namespace, options: Options, deployment: Deployment) -> None:
    """The local database migrated to head by the deploy's runner, run from the served bundle with its
    runtime's Python (as the deploy runs it): the backend's own dependencies, not this machine's venv.
    The scripts are the environment's `migrations.directory` (or --migrations-dir), run with its
    `migrations.environment`; a backend without them uses the database as it is."""
    url = options.env.get("DATABASE_URL")
    if args.no_database or not url or not deployment.api.functions:
        return
    fn = deployment.runtimes.function(sorted(deployment.api.functions)[0])
    settings = environment_config(options.context, options.environment).migrations
    directory = args.migrations_dir or settings.directory
    if not (fn.code / directory / "env.py").is_file():
        stderr_log(f"[local-db] no Alembic scripts at {fn.code / directory}: the database is used as it is")
        return
    python, _version, _why = runtime_python(fn.runtime)  # the runtimes say when it is not the runtime's
    bundle = [fn.code, *fn.layers]
    summary = migrate(
        url, fn.code, directory, bundle=bundle, python=python, environment=dict(settings.environment)
    )
    stderr_log(f"[local-db] migrations: {summary['migration']}, at {summary.get('to')}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    resources = contextlib.ExitStack()
    try:
        options = Options(
            environment=args.environment,
            stack=args.stack or f"credmate-backend-{args.environment}",
            outdir=args.cdk_out.resolve(),
            context=parse_context(args.context),
            api=args.api,
            code=tuple(args.code),
            env=parse_env(args.set_env),
            cache_dir=args.cache_dir.resolve(),
        )
        if not args.no_synth:
            synthesize(options.outdir, options.context)
        options = replace(options, env=with_database(args, options, resources))
        deployment = load_deployment(options)
        migrate_to_head(args, options, deployment)
    except (LocalStackError, PostgresError) as exc:
        resources.close()
        print(f"local-api: {exc}", file=sys.stderr)
        return 1
    except BaseException:
        resources.close()
        raise
    with resources:
        return serve(args, options, deployment)


def serve(args: argparse.Namespace, options: Options, deployment: Deployment) -> int:
    gateway = Gateway(deployment)
    try:
        server = make_server(gateway, args.port)
    except OSError as exc:
        print(f"local-api: cannot listen on {LOOPBACK}:{args.port}: {exc.strerror}", file=sys.stderr)
        deployment.runtimes.stop()
        return 1
    base = f"http://{LOOPBACK}:{server.server_port}/{deployment.api.stage}"
    stderr_log(
        f"[local-api] {options.stack}: REST API {deployment.api.logical_id}, stage {deployment.api.stage}"
    )
    for line in describe(deployment, base):
        stderr_log(line)
    stop = threading.Event()
    if args.watch:
        threading.Thread(target=watch, args=(gateway, options, stop), daemon=True).start()
    stderr_log(f"[local-api] listening on {base} (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.server_close()
        gateway.deployment.runtimes.stop()
    return 0


def _stop_on_sigterm(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # the same clean shutdown as Ctrl-C: the emulators are stopped


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    sys.exit(main())
