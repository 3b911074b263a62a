"""Smoke-test any deployment of the API from a laptop or CI: the post-traffic hook's four checks.

    python -m scripts.deploy.smoke_test --url https://abc123.execute-api.eu-west-1.amazonaws.com/v1/
    make smoke URL=https://api.credentialmate.com/
    make smoke URL=http://127.0.0.1:3000/v1      # against `make local-api` (plain http: loopback only)

Used by docs/migration-from-sam.md to compare the SAM API, the new stack's stage URL and the custom domain
before and after the switch. The checks are the hook's own code (lambda_src/hooks/post_traffic.py), run
here with this machine's network instead of inside Lambda: GET /health answers 200 healthy, it carries the
CORS header for the origin, a preflight on the login path allows the API's methods and headers, and a login
with credentials that cannot exist answers 401 (not 5xx). One line per check; exit 0 when all pass, 1 when
one fails, 2 on a bad argument.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

REPO_ROOT = Path(__file__).resolve().parents[2]
HOOKS = REPO_ROOT / "lambda_src" / "hooks"
for path in (REPO_ROOT, HOOKS):
    if str(path) not in sys.path:  # run as `python -m scripts.deploy.smoke_test`, or loaded from its file
        sys.path.insert(0, str(path))

import hook_calls  # noqa: E402
import hook_report  # noqa: E402
import post_traffic  # noqa: E402

from stacks.config import CORS_HEADERS, CORS_METHODS, DEFAULT_CORS_ORIGINS  # noqa: E402


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the API's base URL (stage URL or custom domain)")
    parser.add_argument("--origin", default=DEFAULT_CORS_ORIGINS[0], help="a browser origin the API allows")
    parser.add_argument("--login-path", default="/api/v1/auth/login")
    parser.add_argument("--login-body", choices=("json", "form"), default="json")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds for all checks, retries included"
    )
    return parser.parse_args(argv)


def _loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def run(argv: Sequence[str], out: TextIO | None = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as exc:
        return 2 if exc.code else 0
    stream = out or sys.stdout
    url = urllib.parse.urlsplit(args.url)
    if url.scheme not in ("http", "https") or not url.netloc:
        print(f"smoke_test: --url {args.url!r} must be an http(s) URL like https://api.credentialmate.com/",
              file=sys.stderr)  # fmt: skip
        return 2
    if url.scheme == "http" and not _loopback(url.hostname):
        print(f"smoke_test: --url {args.url!r}: plain http is for a local API (127.0.0.1, localhost) only; "
              "use https", file=sys.stderr)  # fmt: skip
        return 2
    config = post_traffic.PostTrafficConfig(
        api_url=args.url,
        allowed_origin=args.origin,
        cors_methods=CORS_METHODS,
        cors_headers=CORS_HEADERS,
        login_path=args.login_path,
        login_body=args.login_body,
    )
    runtime = hook_calls.Runtime()
    log = hook_report.HookLog(hook="smoke_test", function=args.url, stream=sys.stderr)
    started = time.monotonic()
    results = post_traffic.api_checks(
        config, deadline=runtime.clock() + args.timeout, log=log, runtime=runtime
    )
    for result in results:
        print(f"{'PASS' if result.ok else 'FAIL'} {result.check}: {result.reason}", file=stream)
    failed = [r.check for r in results if not r.ok]
    verdict = f"FAILED: {', '.join(failed)}" if failed else "all checks passed"
    print(f"{args.url}: {verdict} ({time.monotonic() - started:.1f} s)", file=stream)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
