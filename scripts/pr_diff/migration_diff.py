#!/usr/bin/env python3
"""The Alembic migrations a deploy will apply: new revision files under the backend's `versions/` since a
git base ref, with their revision ids read from the files as text (nothing is imported or executed).

    python -m scripts.pr_diff.migration_diff --backend apps/backend-api --base origin/main \
        [--migrations-dir DIR]
    python -m scripts.pr_diff.migration_diff ... --json

The deploy's migration step runs `upgrade head`, so on a database at the base's head these are exactly the
revisions it applies, in the order listed (down_revision chain). It also lists migration files changed or
removed since the base: an edited revision never runs again on a database that already has it, and a
removed one makes the migration step refuse a database that is at it.

`migration_changes()` and `render_markdown()` are what the PR diff calls.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stacks.bundling.spec import source_root

DEFAULT_MIGRATIONS_DIR = "migrations"
# `revision = "abc"`, `revision: str = 'abc'`; down_revision may be None, a string or a tuple of strings.
_ASSIGN = r"^{name}\s*(?::[^=\n]+)?=\s*(?P<value>.+?)\s*(?:#.*)?$"
_QUOTED = re.compile(r"""["']([^"']+)["']""")


class MigrationDiffError(RuntimeError):
    """git or the backend layout does not allow the comparison; the message says what to fix."""


@dataclass(frozen=True)
class Migration:
    path: str  # relative to the git repository root
    revision: str | None
    down_revisions: tuple[str, ...]
    title: str  # first line of the module docstring, if any


@dataclass(frozen=True)
class MigrationChanges:
    versions_dir: str  # relative to the git repository root
    base: str
    added: list[Migration] = field(default_factory=list)  # in the order upgrade applies them
    modified: list[Migration] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # paths

    @property
    def empty(self) -> bool:
        return not (self.added or self.modified or self.removed)


def _assignment(text: str, name: str) -> str | None:
    match = re.search(_ASSIGN.format(name=re.escape(name)), text, re.MULTILINE)
    return match.group("value") if match else None


def parse_migration(text: str, path: str) -> Migration:
    """Revision ids and title of a migration file, read as text."""
    rev_value = _assignment(text, "revision")
    rev_match = _QUOTED.search(rev_value) if rev_value else None
    down_value = _assignment(text, "down_revision")
    downs = tuple(_QUOTED.findall(down_value)) if down_value and down_value != "None" else ()
    doc = re.match(r'\s*(?:"""|\'\'\')\s*(.*)', text)
    return Migration(
        path=path,
        revision=rev_match.group(1) if rev_match else None,
        down_revisions=downs,
        title=doc.group(1).strip().rstrip('"').rstrip("'").strip() if doc else "",
    )


def run_git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise MigrationDiffError(f"git {' '.join(args)} failed in {repo}: {done.stderr.strip()}")
    return done.stdout


def _is_revision_file(path: str) -> bool:
    name = Path(path).name
    return name.endswith(".py") and name != "__init__.py" and "__pycache__" not in Path(path).parts


def _upgrade_order(migrations: list[Migration]) -> list[Migration]:
    """Parents before children (Alembic's order); ties and unparsable files by path."""
    remaining = sorted(migrations, key=lambda m: m.path)
    known = {m.revision for m in remaining if m.revision}
    ordered: list[Migration] = []
    placed: set[str] = set()
    while remaining:
        ready = [m for m in remaining if all(d in placed or d not in known for d in m.down_revisions)]
        if not ready:  # a cycle: Alembic would refuse it too; keep the files listed anyway
            ready = remaining[:1]
        for m in ready:
            ordered.append(m)
            remaining.remove(m)
            if m.revision:
                placed.add(m.revision)
    return ordered


def migration_changes(
    backend_root: Path, base: str, *, migrations_dir: str = DEFAULT_MIGRATIONS_DIR
) -> MigrationChanges:
    """Migration files added, modified and removed under `<source folder>/<migrations_dir>/versions` (the
    source folder: spec.source_root) between `base` and the working tree (what a deploy from this checkout
    synthesizes), untracked files included."""
    source = source_root(backend_root)
    versions = (source / migrations_dir / "versions").resolve()
    if not versions.is_dir():
        raise MigrationDiffError(
            f"{versions} is not a folder: the backend's Alembic versions/ must be under "
            f"{source / migrations_dir} (set the migrations directory, or turn migrations off for this "
            "backend)"
        )
    repo = Path(run_git(versions, "rev-parse", "--show-toplevel").strip())
    run_git(repo, "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}")
    rel = versions.relative_to(repo.resolve()).as_posix()
    status = run_git(repo, "diff", "--name-status", "--no-renames", base, "--", rel)
    untracked = run_git(repo, "ls-files", "--others", "--exclude-standard", "--", rel)

    added_paths: list[str] = []
    modified_paths: list[str] = []
    removed: list[str] = []
    for line in status.splitlines():
        code, _, path = line.partition("\t")
        if not _is_revision_file(path):
            continue
        {"A": added_paths, "M": modified_paths, "D": removed}.get(code[:1], modified_paths).append(path)
    added_paths += [p for p in untracked.splitlines() if _is_revision_file(p)]

    def read(path: str) -> Migration:
        return parse_migration((repo / path).read_text(encoding="utf-8", errors="replace"), path)

    return MigrationChanges(
        versions_dir=rel,
        base=base,
        added=_upgrade_order([read(p) for p in sorted(set(added_paths))]),
        modified=[read(p) for p in sorted(modified_paths)],
        removed=sorted(removed),
    )


def render_markdown(changes: MigrationChanges) -> str:
    """A PR-comment section; empty string when no migration file changed."""
    if changes.empty:
        return ""
    lines = [f"#### Database migrations (`{changes.versions_dir}`, since `{changes.base}`)", ""]
    if changes.added:
        lines += [
            f"The deploy's migration step will apply **{len(changes.added)}** new revision(s), in this "
            "order, before any traffic moves (old code keeps serving on the new schema during the canary: "
            "expand/contract, docs/runbook-procedures.md#migrations):",
            "",
            "| # | Revision | Revises | File | Title |",
            "|---|---|---|---|---|",
        ]
        for i, m in enumerate(changes.added, 1):
            revises = ", ".join(f"`{d}`" for d in m.down_revisions) or "(base)"
            revision = f"`{m.revision}`" if m.revision else "**no revision id found**"
            lines.append(f"| {i} | {revision} | {revises} | `{m.path}` | {m.title} |")
        lines.append("")
    lines += _bullets(
        "**Changed existing migration(s)**: a database that already ran them will not run them again; "
        "add a new revision instead:",
        [f"`{m.path}` (`{m.revision}`)" for m in changes.modified],
    )
    lines += _bullets(
        "**Removed migration(s)**: a database at one of these revisions will make the migration step "
        "refuse to run (it never downgrades):",
        [f"`{p}`" for p in changes.removed],
    )
    return "\n".join(lines)


def _bullets(heading: str, items: Sequence[str]) -> list[str]:
    """A heading line, one bullet per item and a blank line; nothing when there are no items."""
    return [heading, *(f"- {item}" for item in items), ""] if items else []


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--backend", type=Path, required=True, help="backend root (holds the manifest)")
    parser.add_argument("--base", required=True, help="git ref to compare with (e.g. origin/main)")
    parser.add_argument("--migrations-dir", default=DEFAULT_MIGRATIONS_DIR, help="in the source folder")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    try:
        changes = migration_changes(args.backend, args.base, migrations_dir=args.migrations_dir)
    except MigrationDiffError as exc:
        print(f"migration_diff: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(asdict(changes), indent=2))
    else:
        print(render_markdown(changes) or f"No migration file changed since {args.base}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
