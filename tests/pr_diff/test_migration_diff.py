# mypy: allow-untyped-defs, allow-incomplete-defs
# (pyproject relaxes tests.* like this, but mypy names these files without the tests. prefix)
"""scripts.pr_diff.migration_diff: the migration files a deploy applies, from a temporary git repository."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.pr_diff import migration_diff

REPO_ROOT = Path(migration_diff.__file__).resolve().parents[2]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def revision_file(revision: str, down: str | None, title: str, *, annotated: bool = True) -> str:
    typed = ": str" if annotated else ""
    down_text = repr(down) if down else "None"
    return (
        f'"""{title}\n\nRevision ID: {revision}\n"""\n\nfrom alembic import op\n\n'
        f'revision{typed} = "{revision}"\ndown_revision{typed} = {down_text}  # the parent\n\n\n'
        "def upgrade() -> None:\n    op.execute('SELECT 1')\n"
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository holding a backend at services/api with two revisions on its base commit."""
    root = tmp_path / "repo"
    versions = root / "services" / "api" / "src" / "db" / "versions"
    versions.mkdir(parents=True)
    (versions / "a1_first.py").write_text(revision_file("a1", None, "First"))
    (versions / "b2_second.py").write_text(revision_file("b2", "a1", "Second", annotated=False))
    (root / "services" / "api" / "src" / "db" / "env.py").write_text("# env\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    return root


def backend(repo: Path) -> Path:
    return repo / "services" / "api"


def versions(repo: Path) -> Path:
    return backend(repo) / "src" / "db" / "versions"


def test_no_change_lists_nothing(repo):
    changes = migration_diff.migration_changes(backend(repo), "main", migrations_dir="db")
    assert changes.empty and migration_diff.render_markdown(changes) == ""
    assert changes.versions_dir == "services/api/src/db/versions"


def test_new_revisions_committed_and_untracked_in_upgrade_order(repo):
    # Committed on a branch, file names deliberately not in chain order; one more file not yet committed.
    git(repo, "checkout", "-qb", "feature")
    (versions(repo) / "zz_third.py").write_text(revision_file("c3", "b2", "Add a column"))
    (versions(repo) / "__init__.py").write_text("")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "third")
    (versions(repo) / "aa_fourth.py").write_text(revision_file("d4", "c3", "Backfill it"))
    (versions(repo).parent / "env.py").write_text("# env changed: not a revision\n")

    changes = migration_diff.migration_changes(backend(repo), "main", migrations_dir="db")
    assert [(m.revision, m.down_revisions, m.title) for m in changes.added] == [
        ("c3", ("b2",), "Add a column"),
        ("d4", ("c3",), "Backfill it"),
    ]
    assert [m.path for m in changes.added] == [
        "services/api/src/db/versions/zz_third.py",
        "services/api/src/db/versions/aa_fourth.py",
    ]
    assert changes.modified == [] and changes.removed == []
    text = migration_diff.render_markdown(changes)
    assert "will apply **2** new revision(s)" in text
    assert text.index("`c3`") < text.index("`d4`")
    assert "| 1 | `c3` | `b2` | `services/api/src/db/versions/zz_third.py` | Add a column |" in text


def test_edited_and_removed_revisions_are_flagged(repo):
    (versions(repo) / "b2_second.py").write_text(revision_file("b2", "a1", "Second, edited"))
    git(repo, "rm", "-q", str(versions(repo) / "a1_first.py"))
    git(repo, "commit", "-qam", "rewrite history")
    changes = migration_diff.migration_changes(backend(repo), "HEAD~1", migrations_dir="db")
    assert changes.added == []
    assert [m.revision for m in changes.modified] == ["b2"]
    assert changes.removed == ["services/api/src/db/versions/a1_first.py"]
    text = migration_diff.render_markdown(changes)
    assert "Changed existing migration" in text and "Removed migration" in text


def test_merge_revision_parses_several_parents():
    text = 'revision = "m9"\ndown_revision = ("x1", "y2")\n'
    parsed = migration_diff.parse_migration(text, "v/m9.py")
    assert parsed.revision == "m9" and parsed.down_revisions == ("x1", "y2")
    assert migration_diff.parse_migration("x = 1\n", "v/odd.py").revision is None


def test_bad_inputs_name_what_to_fix(repo, tmp_path):
    with pytest.raises(migration_diff.MigrationDiffError, match=r"src/migrations"):
        migration_diff.migration_changes(backend(repo), "main")
    with pytest.raises(migration_diff.MigrationDiffError, match="no-such-ref"):
        migration_diff.migration_changes(backend(repo), "no-such-ref", migrations_dir="db")


def test_cli(repo):
    (versions(repo) / "c3.py").write_text(revision_file("c3", "b2", "Third"))
    # As its docstring runs it: `python -m scripts.pr_diff.migration_diff` from the repository
    args = [
        sys.executable,
        "-m",
        "scripts.pr_diff.migration_diff",
        "--backend",
        str(backend(repo)),
        "--base",
        "main",
    ]
    done = subprocess.run(
        [*args, "--migrations-dir", "db", "--json"], capture_output=True, text=True, cwd=REPO_ROOT
    )
    assert done.returncode == 0, done.stderr
    assert [m["revision"] for m in json.loads(done.stdout)["added"]] == ["c3"]
    done = subprocess.run([*args, "--migrations-dir", "db"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 0 and "`c3`" in done.stdout
    done = subprocess.run(args, capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 1 and "is not a folder" in done.stderr


def test_the_sample_backend_layout_is_found():
    """The real repository: the sample backend's versions/ exists where the default settings look."""
    repo_root = Path(__file__).resolve().parents[2]
    changes = migration_diff.migration_changes(repo_root / "apps" / "backend-api", "HEAD")
    assert changes.versions_dir == "apps/backend-api/src/migrations/versions"
