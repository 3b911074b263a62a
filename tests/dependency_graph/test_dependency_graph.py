"""`make graph`: which functions reach which shared backend modules, from the import closure."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.dependency_graph import graph as dependency_graph
from stacks.config import ConfigError, EnvironmentConfig, parse_functions


def _backend(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "goals_common").mkdir(parents=True)
    (src / "goals_common" / "__init__.py").write_text("from goals_common.errors import GoalValidationError\n")
    (src / "goals_common" / "errors.py").write_text("class GoalValidationError(Exception):\n    pass\n")
    (src / "reports.py").write_text("VALUE = 1\n")
    (src / "auth.py").write_text(
        "from goals_common import GoalValidationError\n\ndef main(e, c):\n    return 1\n"
    )
    (src / "goals.py").write_text(
        "def main(e, c):\n"
        "    from goals_common import GoalValidationError\n"
        "    import reports\n"
        "    return 2\n"
    )
    return src


def _config() -> EnvironmentConfig:
    catalog = {
        "Auth": {"handler": "auth.main", "trigger": {"type": "none"}},
        "Goals": {"handler": "goals.main", "trigger": {"type": "none"}},
    }
    env = EnvironmentConfig(name="staging")
    return EnvironmentConfig(name="staging", functions=parse_functions(catalog, env, None))


def test_a_shared_module_lists_who_imports_it_at_init_and_who_reaches_it_lazily(tmp_path: Path) -> None:
    graph = dependency_graph.module_graph(_backend(tmp_path), _config())
    # goals_common: Auth at init, Goals lazily; reports.py only Goals, so not shared
    assert graph["goals_common/__init__.py"] == {"init": ["Auth"], "lazy": ["Goals"]}
    assert graph["goals_common/errors.py"] == {"init": ["Auth"], "lazy": ["Goals"]}
    assert "reports.py" not in graph
    everything = dependency_graph.module_graph(tmp_path / "src", _config(), shared_only=False)
    assert everything["reports.py"] == {"init": [], "lazy": ["Goals"]}


def test_the_page_has_the_table_and_a_mermaid_edge_per_use(tmp_path: Path) -> None:
    graph = dependency_graph.module_graph(_backend(tmp_path), _config())
    page = dependency_graph.render(graph, ["Auth", "Goals"], "staging")
    assert "| `goals_common/__init__.py` | Auth | Goals |" in page
    assert "fn_Auth --> mod_goals_common___init___py" in page
    assert "fn_Goals -.-> mod_goals_common___init___py" in page


def test_the_command_writes_the_page_for_the_committed_catalog(tmp_path: Path) -> None:
    out = tmp_path / "graph.md"
    assert dependency_graph.main(["--env", "prod", "--out", str(out)]) == 0
    assert "goals_common/" in out.read_text()


def test_an_unknown_environment_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert dependency_graph.main(["--env", "nope", "--out", "/dev/null"]) == 2
    assert "--env nope: no such environment" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        dependency_graph.load("nope")
