#!/usr/bin/env python3
"""Build an environment's backend bundle as the stack does, without CDK: the bundler from the shell.

    python -m scripts.bundle.build [--env staging] [--backend apps/backend-api] [--cache-dir .cache]

Prints the bundle's summary line and its zip's path. The benchmark times this whole process against
`sam build` (scripts/bench/run.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

from scripts.local.environment import environment_config  # noqa: E402
from stacks.backend_bundle import bundle_spec  # noqa: E402
from stacks.bundling.build import build_bundle  # noqa: E402
from stacks.bundling.spec import BundlingError  # noqa: E402
from stacks.config import ConfigError  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--env", default="staging", help="environment of cdk.json whose bundle to build")
    parser.add_argument("--backend", type=Path, default=REPO_ROOT / "apps" / "backend-api")
    parser.add_argument("--cache-dir", type=Path, default=REPO_ROOT / ".cache")
    args = parser.parse_args(argv)
    try:
        config = environment_config({}, args.env)
        spec = bundle_spec(config, backend_root=args.backend.resolve(), cache_dir=args.cache_dir.resolve())
        result = build_bundle(spec, log=lambda m: print(m, file=sys.stderr))
    except (BundlingError, ConfigError) as exc:
        print(f"bundle: {exc}", file=sys.stderr)
        return 1
    print(result.summary([f.name for f in config.functions]))
    print(result.zip_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
