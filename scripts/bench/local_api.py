"""What `make local-api` adds to a warm request: the same request through it and straight to the emulator.

    python -m scripts.bench.local_api [--runs 100] [--env staging] [--cdk-out DIR]

Synthesizes the app (unless --cdk-out holds an assembly already), serves the environment's API in this
process on a free loopback port, makes the API function warm, then alternates `runs` times: GET <stage>/health
through local-api with urllib (a new connection each time, as curl does), and the very event local-api built
for that request POSTed to the same aws-lambda-rie process directly. The overhead is the difference of the
two medians; the target is at most 20 ms. `scripts/bench/run.py` calls `report_line()` and prints its row.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.local import api as local_api
from scripts.local import gateway as local_gateway
from scripts.local import proxy as local_proxy
from scripts.local.stack import DEFAULT_CACHE, LocalStackError, synthesize

OVERHEAD_LIMIT_MS = 20.0
HEALTH_PATH = "/health"


@dataclass(frozen=True)
class LocalApiBench:
    runs: int
    through_local_api_ms: float
    direct_ms: float

    @property
    def overhead_ms(self) -> float:
        return self.through_local_api_ms - self.direct_ms

    @property
    def verdict(self) -> str:
        return "PASS" if self.overhead_ms <= OVERHEAD_LIMIT_MS else "FAIL"

    def sentence(self) -> str:
        return (
            f"local-api overhead on a warm GET {HEALTH_PATH}: {self.overhead_ms:.1f} ms "
            f"({self.through_local_api_ms:.1f} ms through local-api, {self.direct_ms:.1f} ms straight to "
            f"the same emulator; medians of {self.runs}; limit {OVERHEAD_LIMIT_MS:.0f} ms): {self.verdict}"
        )

    def row(self) -> str:
        return (
            f"| local-api overhead on a warm GET {HEALTH_PATH} | {self.overhead_ms:.1f} ms "
            f"({self.through_local_api_ms:.1f} ms through local-api, {self.direct_ms:.1f} ms straight to the "
            f"emulator; medians of {self.runs}) | <= {OVERHEAD_LIMIT_MS:.0f} ms | **{self.verdict}** |"
        )


def measure(
    *,
    runs: int = 100,
    environment: str = "staging",
    outdir: Path | None = None,
    context: dict[str, str] | None = None,
    log: Callable[[str], None],
) -> LocalApiBench:
    with tempfile.TemporaryDirectory(prefix="bench-local-api-") as tmp:
        assembly = outdir or Path(tmp) / "cdk.out"
        if not (assembly / "manifest.json").is_file():
            synthesize(assembly, context or {}, log=log)
        options = local_api.Options(
            stack=f"credmate-backend-{environment}",
            outdir=assembly,
            context=context or {},
            api=None,
            code=(),
            env={},
            cache_dir=DEFAULT_CACHE,
        )
        quiet: Callable[[str], None] = lambda _m: None  # noqa: E731 (the request log would flood the console)
        deployment = local_api.load_deployment(options, log=quiet)
        deployment.runtimes.forward_logs = False
        gateway = local_gateway.Gateway(deployment, log=quiet)
        server = local_gateway.make_server(gateway, 0)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            return _alternate(server.server_port, deployment, runs)
        finally:
            server.shutdown()
            server.server_close()
            deployment.runtimes.stop()


def _alternate(port: int, deployment: local_gateway.Deployment, runs: int) -> LocalApiBench:
    api = deployment.api
    url = f"http://127.0.0.1:{port}/{api.stage}{HEALTH_PATH}"
    resource, params = api.match(tuple(HEALTH_PATH.strip("/").split("/"))) or (None, {})
    if resource is None:
        raise LocalStackError(f"the API has no route for {HEALTH_PATH}")
    function = (resource.methods.get("GET") or resource.methods["ANY"]).function
    assert function is not None
    headers = [
        ("Host", f"127.0.0.1:{port}"),
        ("User-Agent", "Python-urllib/3"),
        ("Accept-Encoding", "identity"),
    ]
    request = local_proxy.Request(
        "GET", f"/{api.stage}{HEALTH_PATH}", headers, b"", "127.0.0.1", "127.0.0.1", port
    )
    event: dict[str, Any] = local_proxy.proxy_event(api, request, resource, params, "bench")[0]

    def through() -> float:
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read()
            if response.status != 200:
                raise LocalStackError(f"GET {url} answered {response.status}")
        return (time.perf_counter() - started) * 1000

    for _ in range(5):  # cold start, then a few warm requests
        through()
    emulator = deployment.runtimes.emulator(function)
    assert emulator is not None

    def direct() -> float:
        started = time.perf_counter()
        result = emulator.invoke(event)
        if result.function_error:
            raise LocalStackError(f"direct invoke failed: {result.payload}")
        return (time.perf_counter() - started) * 1000

    via, straight = [], []
    for _ in range(runs):
        via.append(through())
        straight.append(direct())
    return LocalApiBench(runs, statistics.median(via), statistics.median(straight))


def report_line(log: Callable[[str], None], backend_root: Path | None = None, runs: int = 100) -> str:
    """The benchmark's line for scripts/bench/run.py; the reason instead when it could not be measured."""
    try:
        context = {"backend_root": str(backend_root)} if backend_root else None
        return measure(runs=runs, context=context, log=log).sentence()
    except Exception as exc:  # the bundling benchmark's numbers stay worth having
        return f"local-api overhead not measured: {type(exc).__name__}: {str(exc).splitlines()[-1:]}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--env", default="staging")
    parser.add_argument("--cdk-out", type=Path, help="an existing assembly (default: synthesize one)")
    args = parser.parse_args(argv)
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    try:
        result = measure(runs=args.runs, environment=args.env, outdir=args.cdk_out, log=log)
    except LocalStackError as exc:
        print(f"bench_local_api: {exc}", file=sys.stderr)
        return 1
    print(result.row())
    return 0 if result.verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
