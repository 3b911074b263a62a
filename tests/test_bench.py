"""The benchmark script's pure parts: medians, target verdicts, tables, README markers, CLI wiring.

Nothing here installs or builds anything: `run_benchmark` is replaced by a canned report where main() is
exercised. The real benchmark is `make bench`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from stacks.bundling import layers

# scripts/ is a folder of scripts, not a package: importing it as `bench` (its own name) keeps mypy's
# `mypy .` from seeing scripts/bench.py under two module names.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import bench

MINI_BACKEND = Path(__file__).resolve().parent / "fixtures" / "mini_backend"


def make_report(*, sam_measured: bool = True, unchanged_hit: bool = True) -> bench.Report:
    ours = bench.ToolResult(
        tool="this bundler (uv 0.13.9)",
        cold=(2.0, 1.0, 3.0),
        warm=(0.5, 0.7, 0.6),
        unzipped_bytes=64_000_000,
        zip_bytes=19_500_000,
        warm_label="uv cache kept",
    )
    sam = (
        bench.ToolResult(
            tool="sam build",
            cold=(10.0, 9.0, 11.0),
            warm=(1.8, 1.8, 1.9),
            unzipped_bytes=63_000_000,
            zip_bytes=19_000_000,
            warm_label="--cached",
        )
        if sam_measured
        else bench.ToolResult(tool="sam build", note="skipped (--skip-sam)")
    )
    pip = bench.ToolResult(
        tool="pip install -t", cold=(10.3,), warm=(9.9,), unzipped_bytes=88_000_000, zip_bytes=27_800_000
    )
    return bench.Report(
        backend="apps/backend-api",
        runs=3,
        ours=ours,
        sam=sam,
        pip=pip,
        import_with_bytecode=1.0,
        import_without_bytecode=2.5,
        unchanged_cache_hit=unchanged_hit,
        unchanged_seconds=0.02,
        ours_zip_without_bytecode=15_000_000,
    )


# --- median ----------------------------------------------------------------------------------------------


def test_median_of_odd_and_even_counts() -> None:
    assert bench.median([3.0, 1.0, 2.0]) == 2.0
    assert bench.median([4.0, 1.0, 3.0, 2.0]) == 2.5


def test_median_of_nothing_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="--runs >= 1"):
        bench.median([])
    assert bench.median_or_none([]) is None


# --- targets ---------------------------------------------------------------------------------------------


def verdicts(
    *,
    ours_cold: float = 2.0,
    sam_cold: float | None = 10.0,
    import_with: float = 1.0,
    import_without: float = 2.5,
    ours_zip: int = 19_000_000,
    sam_zip: int | None = 19_000_000,
    unchanged_no_bundling: bool = True,
    source_rebuild: float | None = 0.4,
    sam_source_rebuild: float | None = 4.0,
    synth_change: float | None = 8.0,
    synth_noop: float | None = 8.0,
) -> dict[str, str]:
    targets = bench.evaluate_targets(
        ours_cold=ours_cold,
        sam_cold=sam_cold,
        import_with=import_with,
        import_without=import_without,
        ours_zip=ours_zip,
        sam_zip=sam_zip,
        unchanged_no_bundling=unchanged_no_bundling,
        source_rebuild=source_rebuild,
        sam_source_rebuild=sam_source_rebuild,
        synth_change=synth_change,
        synth_noop=synth_noop,
    )
    return {t.name: t.verdict for t in targets}


def test_all_targets_pass_within_limits() -> None:
    assert set(verdicts().values()) == {"PASS"}


def test_limits_are_inclusive() -> None:
    # GIVEN ratios exactly at 0.3x, 0.5x, 1.1x, 0.1x and 1.15x THEN each target still passes
    result = verdicts(ours_cold=3.0, import_with=1.25, ours_zip=20_900_000, synth_change=9.2)
    assert result == {
        "cold bundle time": "PASS",
        "import time with bytecode": "PASS",
        "zip size": "PASS",
        "synth with unchanged inputs performs no bundling": "PASS",
        "source-only rebuild": "PASS",
        "synth after a source change": "PASS",
    }


@pytest.mark.parametrize(
    ("override", "failing"),
    [
        ({"ours_cold": 3.1}, "cold bundle time"),
        ({"import_with": 1.3}, "import time with bytecode"),
        ({"ours_zip": 21_000_000}, "zip size"),
        ({"unchanged_no_bundling": False}, "synth with unchanged inputs performs no bundling"),
        ({"source_rebuild": 0.41}, "source-only rebuild"),
        ({"synth_change": 9.21}, "synth after a source change"),
    ],
)
def test_each_target_fails_on_its_own(override: dict[str, Any], failing: str) -> None:
    result = verdicts(**override)
    assert result[failing] == "FAIL"
    assert [name for name, v in result.items() if v != "PASS"] == [failing]


def test_unmeasured_sam_makes_its_targets_na_never_pass() -> None:
    result = verdicts(sam_cold=None, sam_zip=None, sam_source_rebuild=None, synth_noop=None)
    assert result["cold bundle time"] == "n/a"
    assert result["zip size"] == "n/a"
    assert result["source-only rebuild"] == "n/a"
    assert result["synth after a source change"] == "n/a"
    assert result["import time with bytecode"] == "PASS"


def test_ratio_is_reported_with_the_verdict() -> None:
    cold = bench.evaluate_targets(
        ours_cold=2.0,
        sam_cold=10.0,
        import_with=None,
        import_without=None,
        ours_zip=None,
        sam_zip=None,
        unchanged_no_bundling=True,
    )[0]
    assert (cold.measured, cold.limit) == ("0.20x", "<= 0.3x sam build cold")


def test_report_targets_use_medians() -> None:
    # medians: ours cold 2.0, sam cold 10.0 -> 0.20x; a mean of sam's (10.0) would agree, ours' min would not
    cold = bench.report_targets(make_report())[0]
    assert cold.measured == "0.20x"


# --- rendering -------------------------------------------------------------------------------------------


def test_tool_table_rows_and_na_columns() -> None:
    report = make_report(sam_measured=False)
    table = bench.render_tool_table([report.ours, report.sam, report.pip])
    lines = table.splitlines()
    assert lines[0] == "| tool | cold s | warm s | unzipped MB | zip MB |"
    assert lines[2] == "| this bundler (uv 0.13.9) | 2.00 | 0.60 (uv cache kept) | 64.00 | 19.50 |"
    assert lines[3] == "| sam build | n/a | n/a | n/a | n/a |"
    assert lines[4] == "| pip install -t | 10.30 | 9.90 | 88.00 | 27.80 |"


def test_results_show_imports_unchanged_line_and_targets() -> None:
    text = bench.render_results(make_report(unchanged_hit=False))
    assert "| with precompiled .pyc (as shipped) | 1.00 |" in text
    assert "| without .pyc (every `__pycache__` removed) | 2.50 |" in text
    assert "Synth with unchanged inputs performs no bundling: no" in text
    assert "| synth with unchanged inputs performs no bundling | no | yes | **FAIL** |" in text
    assert "| cold bundle time | 0.20x | <= 0.3x sam build cold | **PASS** |" in text
    assert "zip without its .pyc files: 15.00 MB (0.79x sam build's zip)" in text


def test_document_holds_results_method_and_notes() -> None:
    doc = bench.render_document(make_report(sam_measured=False), "scripts/bench.py --runs 3", "2025-01-01")
    assert doc.startswith("# Bundling benchmark\n")
    assert "Command: `scripts/bench.py --runs 3`" in doc
    assert "## Method" in doc and "sam build --cached" in doc
    assert "- sam build: skipped (--skip-sam)" in doc


# --- README markers --------------------------------------------------------------------------------------


def test_marked_block_is_replaced_and_the_rest_kept() -> None:
    text = f"# Title\n\nintro\n{bench.README_START}\nold table\n{bench.README_END}\n\nafter\n"
    updated = bench.replace_marked_block(text, "new table\n")
    assert updated == f"# Title\n\nintro\n{bench.README_START}\nnew table\n{bench.README_END}\n\nafter\n"


@pytest.mark.parametrize(
    "text",
    [
        "no markers at all\n",
        f"{bench.README_START}\nonly a start\n",
        f"{bench.README_END}\n{bench.README_START}\n",
    ],
)
def test_missing_or_misordered_markers_give_none(text: str) -> None:
    assert bench.replace_marked_block(text, "table") is None


def test_readme_without_markers_is_left_untouched(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# credmate\n\nno bench section\n")
    before = readme.stat().st_mtime_ns
    message = bench.update_readme(readme, "table")
    assert readme.read_text() == "# credmate\n\nno bench section\n"
    assert readme.stat().st_mtime_ns == before
    assert "not updated" in message and bench.README_START in message and bench.README_END in message


def test_missing_readme_is_reported(tmp_path: Path) -> None:
    message = bench.update_readme(tmp_path / "README.md", "table")
    assert "does not exist" in message
    assert not (tmp_path / "README.md").exists()


def test_readme_with_markers_is_updated(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"a\n{bench.README_START}\n{bench.README_END}\nb\n")
    assert "README updated" in bench.update_readme(readme, "| t |")
    assert readme.read_text() == f"a\n{bench.README_START}\n| t |\n{bench.README_END}\nb\n"


# --- CLI and inputs --------------------------------------------------------------------------------------


def test_cli_defaults_and_runs_validation(capsys: pytest.CaptureFixture[str]) -> None:
    args = bench.parse_args([])
    assert (args.runs, args.backend, args.skip_sam, args.write_readme) == (
        5,
        "apps/backend-api",
        False,
        False,
    )
    with pytest.raises(SystemExit):
        bench.parse_args(["--runs", "0"])
    assert "--runs must be at least 1" in capsys.readouterr().err


def test_backend_layout_is_checked(tmp_path: Path) -> None:
    backend = bench.resolve_backend(str(MINI_BACKEND))
    assert backend.src == MINI_BACKEND / "src"
    assert bench.resolve_backend("tests/fixtures/mini_backend").root == MINI_BACKEND  # from the repo root
    with pytest.raises(bench.BenchError, match="no src/ folder"):
        bench.resolve_backend(str(tmp_path))
    (tmp_path / "src").mkdir()
    with pytest.raises(bench.BenchError, match=r"src/handler\.py.*--backend"):
        bench.resolve_backend(str(tmp_path))


def test_sam_project_has_requirements_inside_code_uri(tmp_path: Path) -> None:
    template = bench.stage_sam_project(bench.resolve_backend(str(MINI_BACKEND)), tmp_path / "stage")
    assert "CodeUri: app/" in template.read_text() and "Runtime: python3.11" in template.read_text()
    assert (tmp_path / "stage" / "app" / "requirements.txt").read_text() == (
        MINI_BACKEND / "requirements.txt"
    ).read_text()
    assert (tmp_path / "stage" / "app" / "handler.py").is_file()


def test_main_writes_doc_and_readme(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a canned benchmark and a README with markers
    doc, readme = tmp_path / "docs" / "benchmark.md", tmp_path / "README.md"
    readme.write_text(f"x\n{bench.README_START}\n{bench.README_END}\n")
    monkeypatch.setattr(bench, "DOC_PATH", doc)
    monkeypatch.setattr(bench, "README_PATH", readme)
    monkeypatch.setattr(bench, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(bench, "run_benchmark", lambda *_a, **_k: make_report())
    # WHEN the script runs with --write-readme
    code = bench.main(["--runs", "3", "--backend", str(MINI_BACKEND), "--write-readme"])
    # THEN it prints the tables, writes the document and fills the README block
    assert code == 0
    out = capsys.readouterr().out
    assert "| tool | cold s | warm s | unzipped MB | zip MB |" in out
    assert "| cold bundle time | 0.20x" in doc.read_text()
    assert "| cold bundle time | 0.20x" in readme.read_text()
    assert "docs/benchmark.md" in readme.read_text()


def test_main_reports_a_bad_backend(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert bench.main(["--backend", str(tmp_path)]) == 2
    assert "no src/ folder" in capsys.readouterr().err


def test_tool_errors_are_shortened_to_what_and_why() -> None:
    error = bench.BenchError(
        "pip install aws-sam-cli==1.170.0 failed (exit 1):\nlots\nof\nERROR: no network\n"
    )
    assert bench._brief(error) == "pip install aws-sam-cli==1.170.0 failed (exit 1): ... ERROR: no network"
    assert bench._brief(bench.BenchError("sam build did not finish")) == "sam build did not finish"


def test_edit_loop_table_and_targets_use_medians() -> None:
    from dataclasses import replace

    report = replace(
        make_report(),
        ours_source_rebuild=(0.5, 0.3, 0.4),
        sam_source_rebuild=(4.0, 5.0, 3.0),
        synth_noop=(8.0, 7.0, 9.0),
        synth_source_change=(8.5, 9.5, 8.8),
    )
    text = bench.render_results(report)
    assert "| rebuild the bundle | 0.40 | `sam build --cached` after the same change | 4.00 |" in text
    assert "| `cdk synth` of this app | 8.80 | `cdk synth`, nothing changed | 8.00 |" in text
    assert (
        "| source-only rebuild | 0.10x | <= 0.1x sam build --cached after the same change | **PASS** |"
        in text
    )
    assert "| synth after a source change | 1.10x | <= 1.15x no-op synth | **PASS** |" in text


def test_one_line_change_edits_handler_only(tmp_path: Path) -> None:
    (tmp_path / "handler.py").write_text("X = 1\n")
    bench.one_line_change(tmp_path, 3, "n1")
    assert (tmp_path / "handler.py").read_text() == "X = 1\n\n_BENCH_EDIT = 3, 'n1'\n"


def test_edits_of_separate_bench_invocations_differ(tmp_path: Path) -> None:
    # A synth after an edit caches its bundle in the repository: an edit repeated by a later invocation would
    # be a cache hit and time no build and no verification.
    import subprocess

    scripts = Path(bench.__file__).parent
    script = f"import sys; sys.path.insert(0, {str(scripts)!r}); import bench; print(bench.EDIT_NONCE)"
    nonces = {
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=scripts.parent
        ).stdout
        for _ in range(2)
    }
    assert len(nonces) == 2 and all(n.strip() for n in nonces)


def test_the_shared_edit_row_is_shown_and_is_not_a_target() -> None:
    from dataclasses import replace

    report = replace(
        make_report(),
        synth_noop=(8.0, 7.0, 9.0),
        synth_source_change=(8.5, 9.5, 8.8),
        synth_shared_change=(10.0, 11.0, 12.0),
        shared_module="app/db.py",
    )
    text = bench.render_results(report)
    assert "the change in `app/db.py` instead (every function imports it; not a target) | 11.00 |" in text
    assert "| synth after a source change | 1.10x |" in text  # the target still reads the handler.py edit


def test_module_every_function_imports_follows_the_catalogs_handlers(tmp_path: Path) -> None:
    import json

    # GIVEN a source tree for cdk.json's catalog: every handler module imports common/util.py at init, the
    # API handler also imports api_only.py, and the worker imports lazy.py inside a function only
    context = json.loads((bench.REPO_ROOT / "cdk.json").read_text())["context"]
    modules = {spec["handler"].rpartition(".")[0] for spec in context["functions"].values()}
    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "__init__.py").write_text("")
    (tmp_path / "common" / "util.py").write_text("X = 1\n")
    (tmp_path / "api_only.py").write_text("Y = 2\n")
    (tmp_path / "lazy.py").write_text("Z = 3\n")
    for i, module in enumerate(sorted(modules)):
        extra = "import api_only\n" if i == 0 else "def later():\n    import lazy\n"
        path = tmp_path / f"{module.replace('.', '/')}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"from common.util import X\n{extra}\ndef lambda_handler(e, c):\n    return X\n")
    # THEN the shared module is the one every function runs at init, not its package's __init__
    assert bench.module_every_function_imports(tmp_path) == "common/util.py"
    # AND with nothing shared there is none
    (tmp_path / "common" / "util.py").unlink()
    for module in modules:
        path = tmp_path / f"{module.replace('.', '/')}.py"
        path.write_text("def lambda_handler(e, c):\n    return 1\n")
    assert bench.module_every_function_imports(tmp_path) is None


def test_a_sam_venv_that_cannot_start_is_made_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a SAM venv created in another checkout: its scripts name an interpreter that is gone
    venv = tmp_path / "sam-venv"
    (venv / "bin").mkdir(parents=True)
    stale = venv / "bin" / "sam"
    stale.write_text("#!/nowhere/any-more/python\n")
    stale.chmod(0o755)
    (venv / "stale-marker").write_text("")
    calls: list[str] = []

    def fake_run(cmd: list[str], *, what: str, **_kw: object) -> float:
        calls.append(what)
        if "-m" in cmd and "venv" in cmd:  # creating the venv
            (venv / "bin").mkdir(parents=True, exist_ok=True)
            (venv / "bin" / "python").write_text("")
        else:  # installing aws-sam-cli
            sam = venv / "bin" / "sam"
            sam.write_text(f"#!/bin/sh\necho 'SAM CLI, version {bench.SAM_VERSION}'\n")
            sam.chmod(0o755)
        return 0.0

    monkeypatch.setattr(bench, "_run", fake_run)
    # WHEN the bench needs sam
    sam = bench.ensure_sam(venv)
    # THEN the broken venv was removed and built again, and the new sam answers
    assert not (venv / "stale-marker").exists()
    assert [c.split(" ")[0] for c in calls] == ["creating", "pip"]
    assert sam == venv / "bin" / "sam"


def test_wait_for_spare_sees_a_ready_tree_and_gives_up_without_one(tmp_path: Path) -> None:
    assert bench.wait_for_spare(tmp_path, timeout_s=0.2) is False
    (tmp_path / "layers" / "deps-abc" / "spares" / ".making-1").mkdir(parents=True)
    assert bench.wait_for_spare(tmp_path, timeout_s=0.2) is False, "a half-made tree is not ready"
    (tmp_path / "layers" / "deps-abc" / "spares" / f"{layers.SPARE_PREFIX}1").mkdir()
    assert bench.wait_for_spare(tmp_path, timeout_s=0.2) is True
