"""The benchmark script's pure parts: spreads, target verdicts, the like-for-like inputs, the edit, the
interleaving and the document. Nothing here builds anything; the real benchmark is `make bench`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from scripts.bench import report as bench_report
from scripts.bench import run

REPO_ROOT = Path(__file__).resolve().parents[2]


def _report(**rows: tuple[float, ...]) -> bench_report.Report:
    values = {
        "cold": (5.0, 4.0, 6.0),
        "sam_cold": (18.0, 17.0, 20.0),
        "synth_noop": (6.0, 6.1, 5.9),
        "synth_edit": (6.5, 6.6, 6.4),
        "sam_cached": (3.0, 3.1, 2.9),
        "served": (0.6, 0.7, 0.5),
        "sam_served": (4.0, 4.2, 3.9),
        **rows,
    }
    return bench_report.Report(
        {k: bench_report.Timing(k, v) for k, v in values.items()}, {"ours": 37_000_000, "sam": 35_000_000}
    )


def test_a_timing_shows_its_median_and_spread() -> None:
    assert bench_report.Timing("x", (3.0, 1.0, 2.0)).text() == "2.00 s (1.00-3.00)"
    assert (
        bench_report.Timing("x", ()).text() == "not measured" and bench_report.Timing("x", ()).median is None
    )


def test_targets_pass_within_their_limits_inclusive() -> None:
    assert [t.verdict for t in _report().targets()] == ["PASS"] * 4
    at_limit = _report(cold=(6.0,), sam_cold=(20.0,), synth_edit=(11.5,), synth_noop=(10.0,), served=(1.0,))
    assert [t.verdict for t in at_limit.targets()] == ["PASS", "PASS", "PASS", "PASS"]


@pytest.mark.parametrize(
    ("rows", "failing"),
    [
        ({"cold": (7.0,)}, "cold bundle"),
        ({"synth_edit": (7.0,)}, "synth after a one-line edit"),
        ({"served": (1.2,), "sam_cached": (5.0,)}, "save-to-served"),
        ({"sam_cached": (1.0,)}, "save-to-served against SAM"),
    ],
)
def test_each_target_fails_on_its_own(rows: dict[str, tuple[float, ...]], failing: str) -> None:
    verdicts = {t.name: t.verdict for t in _report(**rows).targets()}
    assert [name for name, verdict in verdicts.items() if verdict == "FAIL"] == [failing]


def test_an_unmeasured_side_is_never_a_pass() -> None:
    targets = _report(sam_cold=(), served=()).targets()
    assert [t.verdict for t in targets] == ["n/a", "PASS", "n/a", "n/a"]


def test_sam_gets_the_locks_pins_as_its_requirements() -> None:
    pins = bench_report.lock_pins((REPO_ROOT / "apps" / "backend-api" / "requirements.lock").read_text())
    lines = pins.splitlines()
    assert "fastapi==0.115.6" in lines and "mangum==0.19.0" in lines
    assert not [ln for ln in lines if "--hash" in ln or ln.startswith("#") or ln.endswith("\\")]


def test_the_edit_is_one_line_in_the_middle_and_still_parses(tmp_path: Path) -> None:
    module = tmp_path / "handler.py"
    original = (
        'import os\n\n\ndef f():\n    return (\n        1\n    )\n\n\nX = 1\nY = 2\nZ = """\na\nb\n"""\n'
    )
    module.write_text(original)
    bench_report.middle_edit(module, "run-1")
    lines = module.read_text().splitlines()
    ast.parse(module.read_text())
    assert len(lines) == len(original.splitlines()) + 1
    at = lines.index("_BENCH_EDIT = 'run-1'")
    assert 0 < at < len(lines) - 1, "not appended at either end"


def test_runs_interleave_their_commands() -> None:
    order: list[str] = []

    def step(name: str, seconds: float) -> bench_report.Step:
        def one(n: int) -> float:
            order.append(f"{name}{n}")
            return seconds

        return name, one

    timings = bench_report.interleaved(2, [step("a", 1.0), step("b", 2.0)], print)
    assert order == ["a0", "b0", "a1", "b1"]
    assert timings["a"].values == (1.0, 1.0) and timings["b"].median == 2.0


def test_the_document_holds_rows_targets_method_and_notes() -> None:
    report = bench_report.Report(
        _report().rows, {"ours": None, "sam": 1_000_000}, (("host", "x"),), ("sam failed",)
    )
    text = bench_report.render_document(report, 3, "python -m scripts.bench", "2026-12-07")
    assert "save-to-served" in text and "| sam build's output, zipped | 1.00 |" in text
    assert "not measured" in text and "## Method: what each side includes" in text
    assert "- sam failed" in text and "- host: x" in text


def test_a_backend_without_a_lock_is_refused_naming_make_lock(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    with pytest.raises(run.BenchError, match="make lock"):
        run.stage(tmp_path, tmp_path / "scratch")
