#!/usr/bin/env python3
"""Which functions reach which shared source modules: the dependency graph of the incident report.

From the bundle's static import closure (stacks/bundling/import_closure.py), for one environment's catalog:
every backend module that two or more functions reach, and which functions import it at init (a broken
export there fails their cold start, as `goals_common` failed every login) or reach it lazily (the first
request that runs that code fails). Written as Markdown with a Mermaid flowchart, which GitHub renders:

    python -m scripts.dependency_graph [--env prod] [--out docs/dependency-graph.md] [--all]

`--all` lists modules reached by a single function too. Source only: no bundle, no AWS.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

from stacks.bundling.import_closure import source_reach  # noqa: E402
from stacks.bundling.spec import source_root  # noqa: E402
from stacks.config import ConfigError, EnvironmentConfig, parse_environments  # noqa: E402

Graph = dict[str, dict[str, list[str]]]  # module file -> {"init": [functions], "lazy": [functions]}


def module_graph(source_dir: Path, config: EnvironmentConfig, *, shared_only: bool = True) -> Graph:
    init, lazy = source_reach(source_dir, [(f.name, f.handler) for f in config.functions])
    graph: Graph = {}
    for kind, reach in (("init", init), ("lazy", lazy)):
        for function, files in reach.items():
            for file in files:
                graph.setdefault(file, {"init": [], "lazy": []})[kind].append(function)
    return {
        file: {k: sorted(v) for k, v in uses.items()}
        for file, uses in sorted(graph.items())
        if not shared_only or len(set(uses["init"]) | set(uses["lazy"])) > 1
    }


def _node(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def render(graph: Graph, functions: Sequence[str], env: str) -> str:
    lines = [
        f"# Dependency graph ({env})",
        "",
        "Which functions reach each backend module that more than one function uses (`make graph`;",
        "scripts/dependency_graph/graph.py). **init**: imported when the function starts, so a broken export",
        "fails its cold start; **lazy**: imported inside a function, so the first request running it fails.",
        "",
        "| module | init | lazy |",
        "|---|---|---|",
        *(
            f"| `{file}` | {', '.join(uses['init']) or '-'} | {', '.join(uses['lazy']) or '-'} |"
            for file, uses in graph.items()
        ),
        "",
        "```mermaid",
        "flowchart LR",
        *(f'  fn_{_node(f)}["{f}"]' for f in functions),
        *(f'  mod_{_node(file)}["{file}"]' for file in graph),
        *(
            f"  fn_{_node(fn)} {'-->' if kind == 'init' else '-.->'} mod_{_node(file)}"
            for file, uses in graph.items()
            for kind in ("init", "lazy")
            for fn in uses[kind]
        ),
        "```",
        "",
    ]
    return "\n".join(lines)


def load(env: str) -> tuple[EnvironmentConfig, Path]:
    context: Mapping[str, object] = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    configs = parse_environments(context.get("environments"), context.get("functions"))
    if env not in configs:
        raise ConfigError(
            f"--env {env}: no such environment in cdk.json (environments: {', '.join(configs)})"
        )
    backend = REPO_ROOT / str(context.get("backend_root") or "apps/backend-api")
    return configs[env], source_root(backend)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="prod")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "dependency-graph.md")
    parser.add_argument("--all", action="store_true", help="also modules only one function reaches")
    args = parser.parse_args(argv)
    try:
        config, source_dir = load(args.env)
    except ConfigError as err:
        print(f"dependency graph: {err}", file=sys.stderr)
        return 2
    graph = module_graph(source_dir, config, shared_only=not args.all)
    out = args.out if args.out.is_absolute() else REPO_ROOT / args.out
    out.write_text(render(graph, [f.name for f in config.functions], args.env))
    print(f"{out.relative_to(REPO_ROOT) if out.is_relative_to(REPO_ROOT) else out}: {len(graph)} module(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
