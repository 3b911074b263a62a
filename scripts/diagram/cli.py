"""Draw one synthesized stack as a self-contained SVG: request path, deploy path, alarms and on-call.

    python -m scripts.diagram --out docs/architecture.svg          # what `make diagram` runs
    python -m scripts.diagram --check                              # exit 1 if docs/architecture.svg is stale
    python -m scripts.diagram --tree other/tree.json --stack credmate-backend-staging --out /tmp/s.svg

The input is the construct tree `cdk synth` writes (cdk.out/tree.json). No construct name is hard-coded:
resources are classified by their CloudFormation type (stacks by their construct fqn), boxes are labelled with
construct paths (never hashed logical IDs), and arrows come from references in the synthesized properties
(`Ref`, `Fn::GetAtt`, `Fn::Sub`) between resources of the stack; the one exception, which function a
deployment group deploys, is explained at _deployments. What the tree lacks is not drawn. Relative paths
resolve from the repository root, not from the working directory.

Exit codes: 0 written / up to date, 1 --check found the file stale, 2 missing or invalid tree, unknown stack.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scripts.diagram.build import build_model
from scripts.diagram.model import DiagramError
from scripts.diagram.render import render_svg

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TREE = Path("cdk.out/tree.json")
DEFAULT_OUT = Path("docs/architecture.svg")
DEFAULT_STACK = "credmate-backend-prod"


def _resolve(path: Path) -> Path:
    return path if path.is_absolute() else REPO_ROOT / path


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def load_tree(path: Path) -> dict[str, Any]:
    try:
        tree = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DiagramError(f"{_shown(path)} not found: run make synth first") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DiagramError(f"{_shown(path)} cannot be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise DiagramError(f"{_shown(path)} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(tree, dict) or not isinstance(tree.get("tree"), dict):
        raise DiagramError(f"{_shown(path)} is not a CDK tree.json (no 'tree' node)")
    return tree


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tree", type=Path, default=DEFAULT_TREE, help="tree.json (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="SVG to write (default: %(default)s)")
    parser.add_argument("--stack", default=DEFAULT_STACK, help="stack to draw (default: %(default)s)")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if --out differs from what would be written"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    tree_path, out = _resolve(args.tree), _resolve(args.out)
    try:
        model = build_model(load_tree(tree_path), args.stack)
    except DiagramError as exc:
        message = str(exc) if str(exc).startswith(_shown(tree_path)) else f"{_shown(tree_path)}: {exc}"
        print(f"error: {message}", file=sys.stderr)
        return 2
    svg = render_svg(model).encode("utf-8")
    if args.check:
        if not out.is_file() or out.read_bytes() != svg:
            print(f"{_shown(out)} is stale: run make diagram", file=sys.stderr)
            return 1
        print(f"{_shown(out)} is up to date")
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(svg)
    print(f"wrote {_shown(out)}: {args.stack}, {len(model.functions)} functions, {len(model.edges)} arrows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
