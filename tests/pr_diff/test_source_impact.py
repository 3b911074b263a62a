"""scripts.pr_diff.source_impact and `make diff`'s extra sections: which functions run a changed source file,
from a temporary git repository holding a backend and its catalog."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from scripts.pr_diff import cli as pr_diff
from scripts.pr_diff import migration_diff, source_impact
from tests.conftest import REPO_ROOT

CATALOG = {
    "Login": {"handler": "handlers.login.main", "trigger": {"type": "api"}},
    "Goals": {"handler": "handlers.goals.main", "trigger": {"type": "sqs"}},
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """GIVEN a committed backend: Login imports goals_common at init, Goals only inside a function."""
    src = tmp_path / "backend" / "src"
    (src / "handlers").mkdir(parents=True)
    (src / "goals_common").mkdir()
    (src / "handlers" / "__init__.py").write_text("")
    (src / "handlers" / "login.py").write_text(
        "from goals_common import GoalValidationError\n\ndef main(event, context):\n    return 1\n"
    )
    (src / "handlers" / "goals.py").write_text(
        "def main(event, context):\n    from goals_common.rules import check\n    return check(event)\n"
    )
    (src / "goals_common" / "__init__.py").write_text("class GoalValidationError(Exception):\n    pass\n")
    (src / "goals_common" / "rules.py").write_text("def check(event):\n    return True\n")
    (tmp_path / "backend" / "requirements.txt").write_text("mangum==0.19.0\n")
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    context = {**context, "backend_root": "backend", "functions": CATALOG}
    (tmp_path / "cdk.json").write_text(json.dumps({"context": context}))
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "base")
    return tmp_path


def test_each_changed_file_names_the_functions_that_run_it(repo: Path) -> None:
    # WHEN the shared package and its lazily imported module change, and a test file is added
    src = repo / "backend" / "src"
    (src / "goals_common" / "__init__.py").write_text("class GoalError(Exception):\n    pass\n")
    (src / "goals_common" / "rules.py").write_text("def check(event):\n    return False\n")
    (src / "tests").mkdir()
    (src / "tests" / "test_rules.py").write_text("def test(): pass\n")
    (src / "unused.py").write_text("X = 1\n")
    configs, backend = source_impact.environments(repo)
    result = source_impact.source_impact(backend / "src", configs["prod"], "HEAD")
    # THEN the package is imported at init by Login (and reached lazily by Goals), the module only lazily
    assert dict(result.files) == {
        "goals_common/__init__.py": {"init": ["Login"], "lazy": ["Goals"]},
        "goals_common/rules.py": {"init": [], "lazy": ["Goals"]},
        "unused.py": {"init": [], "lazy": []},
    }
    text = source_impact.render_markdown(result)
    assert "| `goals_common/__init__.py` | Login | Goals |" in text
    assert "| `goals_common/rules.py` | none | Goals |" in text
    assert "| `unused.py` | none (no function imports it) | none |" in text
    assert "tests/" not in text  # the bundle leaves tests out, so the diff does too


def test_no_change_renders_nothing_and_a_bad_ref_is_named(repo: Path) -> None:
    configs, backend = source_impact.environments(repo)
    assert (
        source_impact.render_markdown(source_impact.source_impact(backend / "src", configs["prod"], "HEAD"))
        == ""
    )
    with pytest.raises(migration_diff.MigrationDiffError, match="no-such-ref"):
        source_impact.source_impact(backend / "src", configs["prod"], "no-such-ref")


def test_pr_diff_adds_the_impact_section_to_the_stacks_summary(repo: Path) -> None:
    (repo / "backend" / "src" / "goals_common" / "rules.py").write_text("def check(event):\n    return 0\n")
    options = pr_diff.Options(base="HEAD", repo=repo)
    comparison = pr_diff.Comparison(
        stack="credmate-backend-staging", old_template={}, policy=None, assets={}, compared_with="HEAD"
    )
    sections = pr_diff.extra_sections(options, repo / "cdk.out", comparison)
    assert len(sections) == 1 and sections[0].startswith("#### Source impact (since `HEAD`)")
    assert "| `goals_common/rules.py` | none | Goals |" in sections[0]
    # A stack of no environment of this app gets nothing; a broken catalog says why instead of failing.
    other = pr_diff.Comparison(stack="other", old_template={}, policy=None, assets={}, compared_with="HEAD")
    assert pr_diff.extra_sections(options, repo / "cdk.out", other) == []
    (repo / "cdk.json").write_text(json.dumps({"context": {"environments": {}, "functions": CATALOG}}))
    (broken,) = pr_diff.extra_sections(options, repo / "cdk.out", comparison)
    assert "not computed: cdk.json context environments.staging: missing" in broken
