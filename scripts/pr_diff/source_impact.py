#!/usr/bin/env python3
"""Which functions a source change reaches: for each changed file of the backend, the functions that import it
at init and those that reach it lazily (inside a function), from the bundle's static import closure.

Every function of the catalog shares one bundle, so any source change gives all of them a new version; this
says which of them actually run the changed code, and when: the dependency graph a reviewer needs to know
that renaming an export of a shared module breaks login. Used by `make diff` (pr_diff/cli.py), and as a
command:

    scripts/pr_diff/source_impact.py --base origin/main [--env prod]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

from scripts.pr_diff.migration_diff import MigrationDiffError, run_git  # noqa: E402
from stacks.bundling.import_closure import impact  # noqa: E402
from stacks.bundling.spec import DEFAULT_EXCLUDES, is_excluded, source_root  # noqa: E402
from stacks.config import ConfigError, EnvironmentConfig, parse_environments  # noqa: E402


@dataclass(frozen=True)
class SourceImpact:
    base: str
    # changed file (relative to src/) -> functions importing it at init / reaching it lazily
    files: Mapping[str, Mapping[str, Sequence[str]]]


def changed_source_files(source_dir: Path, base: str) -> list[str]:
    """Files under `source_dir` changed since git ref `base` (working tree, untracked included), relative to
    `source_dir`, minus what the bundle leaves out (tests, caches)."""
    source_dir = source_dir.resolve()
    repo = Path(run_git(source_dir, "rev-parse", "--show-toplevel").strip()).resolve()
    run_git(repo, "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}")
    rel = source_dir.relative_to(repo).as_posix()
    names = run_git(repo, "diff", "--name-only", "--no-renames", base, "--", rel).splitlines()
    names += run_git(repo, "ls-files", "--others", "--exclude-standard", "--", rel).splitlines()
    out = set()
    for name in names:
        relative = Path(name).relative_to(rel).as_posix()
        if not is_excluded(relative, DEFAULT_EXCLUDES):
            out.add(relative)
    return sorted(out)


def source_impact(source_dir: Path, config: EnvironmentConfig, base: str) -> SourceImpact:
    changed = changed_source_files(source_dir, base)
    python_files = [f for f in changed if f.endswith(".py") and (source_dir / f).is_file()]
    graph = impact(source_dir, [(f.name, f.handler) for f in config.functions], python_files)
    files: dict[str, Mapping[str, Sequence[str]]] = {f: {"init": [], "lazy": []} for f in changed}
    files.update(graph)
    return SourceImpact(base=base, files=files)


def render_markdown(result: SourceImpact) -> str:
    """A PR-comment section; empty when no source file changed."""
    if not result.files:
        return ""
    lines = [
        f"#### Source impact (since `{result.base}`)",
        "",
        "Every function ships the same bundle, so each gets a new version; these run the changed code:",
        "",
        "| File | Imported at init by | Reached lazily by |",
        "|---|---|---|",
    ]
    for name, reach in sorted(result.files.items()):
        init = ", ".join(reach["init"]) or "none"
        lazy = ", ".join(f for f in reach["lazy"] if f not in reach["init"]) or "none"
        if name.endswith(".py") and init == "none" and lazy == "none":
            init = "none (no function imports it)"
        lines.append(f"| `{name}` | {init} | {lazy} |")
    return "\n".join(lines) + "\n"


def environments(repo: Path) -> tuple[dict[str, EnvironmentConfig], Path]:
    """The app's environments from its cdk.json, parsed as the app parses them, and its backend folder."""
    try:
        context = json.loads((repo / "cdk.json").read_text())["context"]
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"{repo / 'cdk.json'}: cannot read its context ({err})") from err
    backend = Path(context.get("backend_root") or "apps/backend-api")
    backend = backend if backend.is_absolute() else repo / backend
    return parse_environments(context.get("environments"), context.get("functions")), backend


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base", default="HEAD", help="git ref to compare with (default: HEAD)")
    parser.add_argument("--env", default="prod", help="environment whose function catalog to use")
    args = parser.parse_args(argv)
    try:
        configs, backend = environments(REPO_ROOT)
        if args.env not in configs:
            raise ConfigError(f"cdk.json has no environment {args.env!r} (known: {', '.join(configs)})")
        text = render_markdown(source_impact(source_root(backend), configs[args.env], args.base))
    except (ConfigError, MigrationDiffError) as err:
        print(f"source_impact: {err}", file=sys.stderr)
        return 2
    sys.stdout.write(text or f"no source file changed since {args.base}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
