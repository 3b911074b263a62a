"""Invoke one backend function locally, as Lambda would run it: real bundle, real runtime client, no Docker.

    python -m scripts.local.invoke --function BackendApi --event event.json
    python -m scripts.local.invoke --function Worker --probe            # the deploy-time probe
    make local-invoke FUNCTION=BackendApi EVENT=event.json

Builds (or reuses) the backend bundle with the same bundler as `cdk synth` (for this machine's architecture),
starts AWS's Lambda Runtime Interface Emulator on 127.0.0.1 with the probe wrapper as the handler and the
function's real handler in CREDMATE_REAL_HANDLER, sends the event, prints the response as JSON on stdout and
the function's log on stderr, and always stops the emulator. Exit code 0 when the function answered, 1 on a
function error (init or handler), 2 on bad usage. `--event -` reads the event from stdin.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

from scripts.local.backend import FUNCTION_HANDLERS, build_backend_bundle, function_environment
from scripts.local.emulator import HarnessError, LambdaEmulator
from scripts.local.stack import LocalStackError, parse_pairs

REPO_ROOT = Path(__file__).resolve().parents[2]

DEFAULT_BACKEND = REPO_ROOT / "apps" / "backend-api"


def parse_env(pairs: list[str]) -> dict[str, str]:
    try:
        return parse_pairs(pairs, "--env", "LOG_LEVEL=debug")
    except LocalStackError as exc:
        raise SystemExit(str(exc)) from exc


def read_event(args: argparse.Namespace) -> Any:
    if args.probe:
        # The probe imports what build_info.json records for the function, never what the event names.
        return {"credmate_probe": {}}
    if args.event is None:
        raise SystemExit("give --event FILE (or -) or --probe")
    try:
        text = sys.stdin.read() if args.event == "-" else Path(args.event).read_text()
    except OSError as exc:
        raise SystemExit(f"--event {args.event}: {exc.strerror}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SystemExit(f"--event {args.event} is not JSON: {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Invoke a backend function locally under the Lambda RIE.")
    parser.add_argument("--function", required=True, choices=sorted(FUNCTION_HANDLERS))
    parser.add_argument("--event", help="JSON event file, or - for stdin")
    parser.add_argument("--probe", action="store_true", help="send the deploy-time probe event instead")
    parser.add_argument(
        "--bundle", type=Path, help="an unzipped bundle folder (default: build apps/backend-api)"
    )
    parser.add_argument(
        "--backend", type=Path, default=DEFAULT_BACKEND, help="backend folder (src/, requirements)"
    )
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="function environment"
    )
    parser.add_argument("--timeout", type=int, default=30, help="function timeout in seconds")
    args = parser.parse_args(argv)
    try:
        event = read_event(args)
        extra_env = parse_env(args.env)
    except SystemExit as exc:
        print(f"local_invoke: {exc}", file=sys.stderr)
        return 2

    layers: tuple[Path, ...] = ()
    if args.bundle:
        bundle = args.bundle.resolve()
        if not bundle.is_dir():
            print(f"local_invoke: --bundle {bundle} is not a folder", file=sys.stderr)
            return 2
    else:
        arch = "arm64" if platform.machine().lower() in ("aarch64", "arm64") else "x86_64"
        result = build_backend_bundle(args.backend.resolve(), REPO_ROOT / ".cache", arch)
        print(
            f"[local-invoke] bundle {result.directory} ({'cache hit' if result.cache_hit else 'built'})",
            file=sys.stderr,
        )
        bundle, *rest = result.paths
        layers = tuple(rest)

    emulator = LambdaEmulator(
        bundle=bundle,
        paths=layers,
        environment=function_environment(args.function, extra_env),
        function_name=args.function,
        timeout_seconds=args.timeout,
    )
    try:
        with emulator:
            response = emulator.invoke(event)
            print(emulator.logs(), file=sys.stderr)
    except HarnessError as exc:
        print(f"local_invoke: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(response.payload, indent=2, default=str))
    return 1 if response.function_error else 0


if __name__ == "__main__":
    sys.exit(main())
