"""Benchmark: this bundler vs `sam build` vs plain `pip install -t`, side by side on one backend.

Run by `make bench`.

Measured in one run, medians of --runs (every cold run gets its own fresh temp folder):

* **this bundler** (`build_bundle`): cold = empty cache folder, uv's wheel cache included; warm = bundles
  and dependency layers removed but uv's cache kept (what a requirements change costs); unchanged = a second
  call with the same inputs, which must be a cache hit (what every synth without changes costs);
* **the edit loop**: a one-line change to `handler.py` (a module init imports), then this bundler's rebuild
  (on its cached dependency layer) against `sam build --cached` after the same change, and a `cdk synth`
  of this app after the change against a no-op `cdk synth` of the same app;
* **`sam build`** (aws-sam-cli 1.170.0 from PyPI in its own venv, no container): cold = fresh build folder,
  no `--cached` and an empty pip cache (so it downloads like our cold run does); warm = `sam build --cached`
  after one priming `--cached` build;
* **`pip install -t`** for manylinux2014_x86_64/cp311 wheels: cold = fresh target and `--no-cache-dir`;
  warm = fresh target with a pip cache primed once;
* **sizes**: every output is zipped the same way (zipwrite.write_zip: sorted, deflate level 6);
* **import time**: `python3.11 -I -S -B` imports `handler` from the bundle, as on Lambda's read-only
  /var/task (nothing is written), with our precompiled .pyc and from a copy without any __pycache__.

Targets: cold bundle <= 0.3x sam build cold, import with bytecode <= 0.5x without, zip <= 1.1x sam build's
zip, a synth with unchanged inputs performs no bundling, a source-only rebuild <= 0.1x `sam build --cached`
after the same change, a synth after a source change <= 1.15x a no-op synth.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as `python scripts/bench.py`: make `stacks` importable
    sys.path.insert(0, str(REPO_ROOT))

import bench_local_api  # noqa: E402

from stacks.bundling import import_closure  # noqa: E402
from stacks.bundling.build import build_bundle  # noqa: E402
from stacks.bundling.layers import ready_spares  # noqa: E402
from stacks.bundling.spec import DEFAULT_EXCLUDES, BundleSpec, BundlingError, source_files  # noqa: E402
from stacks.bundling.zipwrite import write_zip  # noqa: E402
from stacks.config import parse_environments  # noqa: E402

SAM_VERSION = "1.170.0"
SAM_VENV = REPO_ROOT / ".cache" / "bench" / "sam-venv"
PROBE_FILE = REPO_ROOT / "lambda_src" / "probe" / "credmate_probe.py"
DOC_PATH = REPO_ROOT / "docs" / "benchmark.md"
README_PATH = REPO_ROOT / "README.md"
README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"
PYTHON_VERSION = "3.11"
# The modules of the stack's handlers (stacks/backend_stack.py; importing it here would start jsii).
BYTECODE_MODULES = ("campaign_scheduler", "credmate_probe", "handler", "worker")

# Target limits: (measured / baseline) must not exceed these.
COLD_RATIO_LIMIT = 0.3
IMPORT_RATIO_LIMIT = 0.5
ZIP_RATIO_LIMIT = 1.1
SOURCE_REBUILD_RATIO_LIMIT = 0.1
SYNTH_CHANGE_RATIO_LIMIT = 1.15

# Generous ceilings: a hung tool must end the benchmark with a message, not block `make bench` forever.
INSTALL_TIMEOUT_S = 900
BUILD_TIMEOUT_S = 600
IMPORT_TIMEOUT_S = 120

SAM_TEMPLATE = """\
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Description: credmate bench - the backend as sam build sees it
Resources:
  Api:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: app/
      Handler: handler.lambda_handler
      Runtime: python3.11
      Architectures: [x86_64]
"""

# How each number is taken; docs/benchmark.md repeats it under its tables.
METHOD = (
    "- **this bundler**: `build_bundle` as the stack configures it (uv, manylinux wheels, dependencies' "
    "test suites and stubs left out, debug sections stripped from native libraries, unchecked-hash .pyc "
    "for the modules the handlers import at init and the dependencies they import lazily, reproducible zip "
    "deflated on every core). "
    "Cold: an empty cache folder, uv's wheel cache included (it lives in the cache "
    "folder). Warm: built bundles and dependency layers deleted but uv's cache kept, which is what a "
    "requirements change costs. Unchanged: a second call with the same inputs; it must be a cache hit (no "
    "install, no copy, no zip).",
    "- **edit loop**: each run appends one assignment line to `handler.py` (the API handler's module, "
    "which init imports, so its bytecode is rebuilt too; the line carries a token unique to the invocation, "
    "so no bundle an earlier invocation cached can answer it) of a copy of the backend. Source-only rebuild: "
    "`build_bundle` on the cache the bundler runs left (its dependency layer is reused; the run fails if "
    "it reinstalled), against `sam build --cached` of the SAM project after the same edit; before each "
    "timed run of either tool the disk is flushed (`os.sync`), so neither pays for the write-back of the "
    "step before. Synth: `cdk synth --quiet` of this app (`-c backend_root=` the copy, both environments, "
    "cdk-nag, background import verification joined) after the edit, against `cdk synth` again with "
    "nothing changed, alternating. Verification re-runs the checks that read the edited file (for "
    "`handler.py`: the API function's, in both environments) and carries the others over; the extra row "
    "times the same edit to a source module every function imports at init (found from the catalog's "
    "import closures), which re-runs every check.",
    "- **what the source-only rebuild does**: takes the dependency tree the previous build linked ahead "
    "(in the background, from the layer, with that build's dependency .pyc linked in: one rename; it links "
    "the tree itself when none is ready; the bench waits for that tree before each timed run, as a "
    "developer's next edit would find it), writes the source, takes from the source layer the parse, .pyc "
    "and zip entry of every file whose bytes did not change (the edited file alone is parsed, compiled and "
    "deflated), then merges the zip from the dependency layer's and the pyc set's stored entries (in-kernel "
    "copies) and the source's. No interpreter starts unless the edit changes which dependencies init "
    "imports. A clean build takes the same steps, which is why the two give the same bytes. Dependency "
    "modules that only the handlers' module-level code pulls in (an app constructor importing an optional "
    "extra) get no .pyc: they compile at cold start, which the import-time row below includes.",
    "- **what a cold or warm build does besides installing**: while the new dependency layer's entries are "
    "deflated (on every core), two interpreters import init's dependency imports and the lazy ones and "
    "write the .pyc of what they load, and the bundle's tree is linked; a lock installs without resolving "
    "its dependencies again (`--no-deps`, checked for completeness after the install).",
    f"- **sam build**: aws-sam-cli {SAM_VERSION} from PyPI in `.cache/bench/sam-venv`, no container, on a "
    "staged CodeUri (src/ + requirements.txt) and a one-function template. Cold: fresh build folder, no "
    "`--cached`, empty pip cache. Warm: `sam build --cached` after one priming `--cached` build; with "
    "nothing changed SAM only copies its cached artifact, so this is SAM's best case, not a source change "
    "(a source change makes `--cached` rebuild the function, dependencies included).",
    "- **pip install -t**: `--platform manylinux2014_x86_64 --implementation cp --python-version 3.11 "
    "--only-binary=:all:` with pip's defaults (it compiles .pyc). Cold: fresh target, `--no-cache-dir`. "
    "Warm: fresh target with a pip cache primed once.",
    "- Every timed run, of every tool, starts on a flushed, quiet disk (`os.sync`, then no write for half a "
    "second, at most 15 s): a run that writes hundreds of megabytes would otherwise slow the next one, "
    "whichever tool that is.",
    "- Timings are wall-clock medians; each cold run uses its own fresh temp folder. Downloads come from "
    "PyPI, so cold numbers include network time. The machine has 2 cores shared with other work: treat "
    "differences under ~10% as noise.",
    "- Import time is the whole `python3.11 -I -S -B -c 'import sys; sys.path.insert(0, B); import "
    "handler'` process (interpreter start included), after one untimed warm-up of each variant, the two "
    "variants alternating. `-B` writes no .pyc, like Lambda's read-only /var/task.",
)

Verdict = Literal["PASS", "FAIL", "n/a"]


class BenchError(RuntimeError):
    """A benchmark step failed; the message says which tool and why."""


# ---------------------------------------------------------------------------------------------------------
# Pure parts: statistics, targets, rendering, README update


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of no measurements: run at least once (--runs >= 1)")
    return float(statistics.median(values))


def median_or_none(values: Sequence[float]) -> float | None:
    return median(values) if values else None


@dataclass(frozen=True)
class ToolResult:
    """One tool's timings (seconds, one per run) and output sizes; empty timings mean not measured."""

    tool: str
    cold: tuple[float, ...] = ()
    warm: tuple[float, ...] = ()
    unzipped_bytes: int | None = None
    zip_bytes: int | None = None
    warm_label: str = ""
    note: str = ""


@dataclass(frozen=True)
class TargetOutcome:
    name: str
    measured: str
    limit: str
    verdict: Verdict


@dataclass(frozen=True)
class Report:
    backend: str
    runs: int
    ours: ToolResult
    sam: ToolResult
    pip: ToolResult
    import_with_bytecode: float | None
    import_without_bytecode: float | None
    unchanged_cache_hit: bool
    unchanged_seconds: float | None
    ours_zip_without_bytecode: int | None = None
    ours_source_rebuild: tuple[float, ...] = ()
    sam_source_rebuild: tuple[float, ...] = ()
    synth_noop: tuple[float, ...] = ()
    synth_source_change: tuple[float, ...] = ()
    # Synth after the same kind of edit to a module every function imports at init (not a target: every
    # function's checks read it, so all of them run again), and that module.
    synth_shared_change: tuple[float, ...] = ()
    shared_module: str | None = None
    environment: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = field(default=())


def _ratio_target(
    name: str, value: float | None, baseline: float | None, limit: float, what: str
) -> TargetOutcome:
    if value is None or baseline is None or baseline <= 0:
        return TargetOutcome(name, "n/a (not measured)", f"<= {limit}x {what}", "n/a")
    ratio = value / baseline
    return TargetOutcome(name, f"{ratio:.2f}x", f"<= {limit}x {what}", "PASS" if ratio <= limit else "FAIL")


def evaluate_targets(
    *,
    ours_cold: float | None,
    sam_cold: float | None,
    import_with: float | None,
    import_without: float | None,
    ours_zip: int | None,
    sam_zip: int | None,
    unchanged_no_bundling: bool,
    source_rebuild: float | None = None,
    sam_source_rebuild: float | None = None,
    synth_change: float | None = None,
    synth_noop: float | None = None,
) -> list[TargetOutcome]:
    """Every target; a target whose inputs were not measured is n/a, never PASS."""
    return [
        _ratio_target("cold bundle time", ours_cold, sam_cold, COLD_RATIO_LIMIT, "sam build cold"),
        _ratio_target(
            "import time with bytecode", import_with, import_without, IMPORT_RATIO_LIMIT, "without bytecode"
        ),
        _ratio_target(
            "zip size",
            None if ours_zip is None else float(ours_zip),
            None if sam_zip is None else float(sam_zip),
            ZIP_RATIO_LIMIT,
            "sam build's zip",
        ),
        TargetOutcome(
            "synth with unchanged inputs performs no bundling",
            "yes" if unchanged_no_bundling else "no",
            "yes",
            "PASS" if unchanged_no_bundling else "FAIL",
        ),
        _ratio_target(
            "source-only rebuild",
            source_rebuild,
            sam_source_rebuild,
            SOURCE_REBUILD_RATIO_LIMIT,
            "sam build --cached after the same change",
        ),
        _ratio_target(
            "synth after a source change", synth_change, synth_noop, SYNTH_CHANGE_RATIO_LIMIT, "no-op synth"
        ),
    ]


def report_targets(report: Report) -> list[TargetOutcome]:
    return evaluate_targets(
        ours_cold=median_or_none(report.ours.cold),
        sam_cold=median_or_none(report.sam.cold),
        import_with=report.import_with_bytecode,
        import_without=report.import_without_bytecode,
        ours_zip=report.ours.zip_bytes,
        sam_zip=report.sam.zip_bytes,
        unchanged_no_bundling=report.unchanged_cache_hit,
        source_rebuild=median_or_none(report.ours_source_rebuild),
        sam_source_rebuild=median_or_none(report.sam_source_rebuild),
        synth_change=median_or_none(report.synth_source_change),
        synth_noop=median_or_none(report.synth_noop),
    )


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _megabytes(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 1e6:.2f}"


def render_tool_table(tools: Sequence[ToolResult]) -> str:
    lines = ["| tool | cold s | warm s | unzipped MB | zip MB |", "|---|---:|---:|---:|---:|"]
    for tool in tools:
        warm = _seconds(median_or_none(tool.warm))
        if tool.warm_label and tool.warm:
            warm = f"{warm} ({tool.warm_label})"
        lines.append(
            f"| {tool.tool} | {_seconds(median_or_none(tool.cold))} | {warm} | "
            f"{_megabytes(tool.unzipped_bytes)} | {_megabytes(tool.zip_bytes)} |"
        )
    return "\n".join(lines)


def render_import_table(with_bytecode: float | None, without_bytecode: float | None) -> str:
    return "\n".join(
        [
            "| bundle | import s |",
            "|---|---:|",
            f"| with precompiled .pyc (as shipped) | {_seconds(with_bytecode)} |",
            f"| without .pyc (every `__pycache__` removed) | {_seconds(without_bytecode)} |",
        ]
    )


def render_edit_loop_table(report: Report) -> str:
    """After a one-line source change: what this bundler and synth cost, against their baselines."""
    rows = [
        (
            "rebuild the bundle",
            report.ours_source_rebuild,
            "`sam build --cached` after the same change",
            report.sam_source_rebuild,
        ),
        (
            "`cdk synth` of this app",
            report.synth_source_change,
            "`cdk synth`, nothing changed",
            report.synth_noop,
        ),
    ]
    if report.synth_shared_change:
        rows.append(
            (
                f"`cdk synth`, the change in `{report.shared_module}` instead (every function imports it; "
                "not a target)",
                report.synth_shared_change,
                "`cdk synth`, nothing changed",
                report.synth_noop,
            )
        )
    lines = ["| after a one-line source change | s | baseline | baseline s |", "|---|---:|---|---:|"]
    for step, ours, baseline, theirs in rows:
        lines.append(
            f"| {step} | {_seconds(median_or_none(ours))} | {baseline} | {_seconds(median_or_none(theirs))} |"
        )
    return "\n".join(lines)


def render_target_table(targets: Sequence[TargetOutcome]) -> str:
    lines = ["| target | measured | limit | result |", "|---|---|---|---|"]
    lines += [f"| {t.name} | {t.measured} | {t.limit} | **{t.verdict}** |" for t in targets]
    return "\n".join(lines)


def _bytecode_size_note(report: Report) -> list[str]:
    # SAM ships no .pyc: this line separates what bytecode costs from what the dependencies cost.
    if report.ours_zip_without_bytecode is None:
        return []
    line = f"This bundler's zip without its .pyc files: {_megabytes(report.ours_zip_without_bytecode)} MB"
    if report.sam.zip_bytes:
        line += f" ({report.ours_zip_without_bytecode / report.sam.zip_bytes:.2f}x sam build's zip)"
    return ["", line + "."]


def render_results(report: Report) -> str:
    """The tables (Markdown): what the console shows and what README's marked block holds."""
    unchanged = "yes" if report.unchanged_cache_hit else "no"
    if report.unchanged_seconds is not None:
        unchanged += (
            f" (second call: cache hit={report.unchanged_cache_hit}, {report.unchanged_seconds:.2f} s)"
        )
    parts = [
        f"Backend `{report.backend}`, medians of {report.runs} run(s); MB = 10^6 bytes, every output zipped "
        "the same way (sorted, deflate level 6).",
        "",
        render_tool_table([report.ours, report.sam, report.pip]),
        *_bytecode_size_note(report),
        "",
        f"Import of `handler` in `python3.11 -I -S -B` (read-only style), median of {report.runs}:",
        "",
        render_import_table(report.import_with_bytecode, report.import_without_bytecode),
        "",
        f"Synth with unchanged inputs performs no bundling: {unchanged}",
        "",
        f"The edit loop, median of {report.runs}:",
        "",
        render_edit_loop_table(report),
        "",
        render_target_table(report_targets(report)),
    ]
    return "\n".join(parts)


def render_document(report: Report, command: str, generated: str) -> str:
    env_lines = [f"- {key}: {value}" for key, value in report.environment]
    tool_notes = [f"- {t.tool}: {t.note}" for t in (report.ours, report.sam, report.pip) if t.note]
    notes = [f"- {n}" for n in report.notes]
    return "\n".join(
        [
            "# Bundling benchmark",
            "",
            f"Generated by `scripts/bench.py` on {generated}; `make bench` rewrites this file.",
            f"Command: `{command}`",
            "",
            "## Results",
            "",
            render_results(report),
            "",
            "## Environment",
            "",
            *env_lines,
            "",
            "## Method",
            "",
            *METHOD,
            *(["", "## Notes", "", *tool_notes, *notes] if tool_notes or notes else []),
            "",
        ]
    )


def replace_marked_block(
    text: str, block: str, start: str = README_START, end: str = README_END
) -> str | None:
    """`text` with everything between the markers replaced by `block`; None when the markers are absent."""
    first = text.find(start)
    if first < 0:
        return None
    last = text.find(end, first + len(start))
    if last < 0:
        return None
    return f"{text[: first + len(start)]}\n{block.strip()}\n{text[last:]}"


def update_readme(path: Path, block: str) -> str:
    """Write `block` between the bench markers of `path`; the file is left untouched when they are missing."""
    if not path.is_file():
        return f"README not updated: {path} does not exist"
    updated = replace_marked_block(path.read_text(), block)
    if updated is None:
        return (
            f"README not updated: {path} has no '{README_START}' ... '{README_END}' markers; add both "
            "where the benchmark table belongs"
        )
    path.write_text(updated)
    return f"README updated: {path} (between the bench markers)"


# ---------------------------------------------------------------------------------------------------------
# Measuring


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _run(
    cmd: Sequence[str],
    *,
    what: str,
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> float:
    """Run `cmd`, return its wall time; a failure or timeout raises BenchError naming `what`."""
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{what} did not finish within {timeout:.0f} s") from exc
    except OSError as exc:
        raise BenchError(f"{what} could not start: {exc}") from exc
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-2500:]
        raise BenchError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return elapsed


def tree_size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def output_sizes(directory: Path, scratch: Path) -> tuple[int, int]:
    """(unzipped bytes, zip bytes) of a build output, zipped the same way for every tool."""
    zip_path = scratch / f"{directory.name}-measure.zip"
    write_zip(directory, zip_path)
    size = zip_path.stat().st_size
    zip_path.unlink()
    return tree_size(directory), size


@dataclass(frozen=True)
class Backend:
    root: Path
    src: Path
    requirements: Path


def resolve_backend(raw: str) -> Backend:
    root = Path(raw)
    if not root.is_absolute():
        root = REPO_ROOT / root
    src, requirements = root / "src", root / "requirements.txt"
    if not src.is_dir():
        raise BenchError(
            f"backend {root} has no src/ folder (expected the apps/backend-api layout: src/ + "
            "requirements.txt); pass --backend PATH"
        )
    if not (src / "handler.py").is_file():
        raise BenchError(
            f"backend {root} has no src/handler.py, the module the benchmark imports; pass "
            "--backend tests/fixtures/mini_backend while the real backend is being written"
        )
    if not requirements.is_file():
        raise BenchError(f"backend {root} has no requirements.txt")
    return Backend(root=root, src=src, requirements=requirements)


def real_python() -> str:
    """The real python3.11 binary: a pyenv shim on PATH would add its own start-up to every import timing."""
    found = shutil.which(f"python{PYTHON_VERSION}")
    if not found:
        raise BenchError(f"python{PYTHON_VERSION} is not on PATH: the import timing needs the target Python")
    proc = subprocess.run(
        [found, "-c", "import sys; print(sys.executable)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else found


@dataclass(frozen=True)
class OursOutcome:
    result: ToolResult
    bundle_dir: Path
    unchanged_cache_hit: bool
    unchanged_seconds: float
    tool: str
    cache: Path
    spec: BundleSpec


def bench_ours(backend: Backend, runs: int, scratch: Path) -> OursOutcome:
    extra = (("credmate_probe.py", PROBE_FILE),) if PROBE_FILE.is_file() else ()
    # As the stack sets it: bytecode for what the probe wrapper and the handlers' modules import at init.
    modules = tuple(
        m
        for m in BYTECODE_MODULES
        if (backend.src / f"{m}.py").is_file() or (m == "credmate_probe" and extra)
    )
    cold: list[float] = []
    warm: list[float] = []
    keep: Path | None = None
    for run in range(runs):
        cache = scratch / f"ours-{run}"
        spec = BundleSpec(
            source_dir=backend.src,
            requirements=backend.requirements,
            cache_dir=cache,
            extra_files=extra,
            bytecode_modules=modules,
        )
        settle()
        started = time.perf_counter()
        result = build_bundle(spec)
        cold.append(time.perf_counter() - started)
        if result.cache_hit:
            raise BenchError(f"bundler cold run {run + 1} was a cache hit in an empty cache folder {cache}")
        # Built bundles and dependency layers go, uv's wheel cache (cache/uv) stays.
        shutil.rmtree(cache / "bundles")
        shutil.rmtree(cache / "layers", ignore_errors=True)
        settle()
        started = time.perf_counter()
        result = build_bundle(spec)
        warm.append(time.perf_counter() - started)
        _log(f"[bench] bundler run {run + 1}/{runs}: cold {cold[-1]:.2f} s, warm {warm[-1]:.2f} s")
        if keep is not None:
            shutil.rmtree(keep, ignore_errors=True)
        keep = cache
    assert keep is not None  # runs >= 1
    last_spec = BundleSpec(
        source_dir=backend.src,
        requirements=backend.requirements,
        cache_dir=keep,
        extra_files=extra,
        bytecode_modules=modules,
    )
    started = time.perf_counter()
    unchanged = build_bundle(last_spec)
    unchanged_seconds = time.perf_counter() - started
    # Reported as a FAIL target rather than a crash, so the tables still show everything else.
    if not unchanged.cache_hit:
        _log("[bench] FAIL: a second build_bundle with unchanged inputs bundled again (no cache hit)")
    unzipped, zipped = output_sizes(unchanged.directory, scratch)
    return OursOutcome(
        result=ToolResult(
            tool=f"this bundler ({result.tool})",
            cold=tuple(cold),
            warm=tuple(warm),
            unzipped_bytes=unzipped,
            zip_bytes=zipped,
            warm_label="uv cache kept",
            note=f"precompiled bytecode: {f'{result.bytecode_files} modules' if result.bytecode else 'none'}"
            + ("; includes credmate_probe.py" if extra else ""),
        ),
        bundle_dir=unchanged.directory,
        unchanged_cache_hit=unchanged.cache_hit,
        unchanged_seconds=unchanged_seconds,
        tool=result.tool,
        cache=keep,
        spec=last_spec,
    )


# Different in every bench invocation: a synth after an edit writes its bundles to the repository's cache,
# so an edit an earlier invocation made would be a cache hit (no build, no verification) and time nothing.
EDIT_NONCE = uuid.uuid4().hex[:12]


def one_line_change(src: Path, run: int, nonce: str = EDIT_NONCE, module: str = "handler.py") -> None:
    """The edit every edit-loop measurement makes: one new line in `module` (handler.py: the API handler's
    module, which init imports)."""
    path = src / module
    path.write_text(path.read_text() + f"\n_BENCH_EDIT = {run!r}, {nonce!r}\n")


def module_every_function_imports(src: Path) -> str | None:
    """A source module (not a package __init__ when there is another) in the init import closure of every
    function of cdk.json's catalog, which the app synthesizes; None when the functions share none."""
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    config = next(iter(parse_environments(context["environments"], context["functions"]).values()))
    closure = import_closure.analyze(
        src,
        source_files(src, DEFAULT_EXCLUDES),
        [(f.name, f.handler) for f in config.functions],
        installed=None,
        python_version=config.function.runtime.removeprefix("python"),
    )
    shared = set.intersection(*(set(files) for files in closure.init_files.values()))
    candidates = sorted(f for f in shared if not f.endswith("__init__.py")) or sorted(shared)
    return candidates[0] if candidates else None


DISKSTATS = Path("/proc/diskstats")


def _disk_writes() -> tuple[int, ...]:
    """(writes completed, I/Os in progress) of every block device (Linux); () where unknown."""
    try:
        lines = DISKSTATS.read_text().splitlines()
    except OSError:
        return ()
    counters: list[int] = []
    for line in lines:
        fields = line.split()
        if len(fields) > 11:
            counters += (int(fields[7]), int(fields[11]))  # writes completed, I/Os in progress
    return tuple(counters)


def wait_for_spare(cache_dir: Path, timeout_s: float = 30.0) -> bool:
    """Wait until a layer of `cache_dir` has a linked tree ready for the next build (layers.py)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(ready_spares(layer) for layer in (cache_dir / "layers").glob("deps-*")):
            return True
        time.sleep(0.05)
    return False


def settle(quiet_s: float = 0.5, limit_s: float = 15.0) -> None:
    """Flush the write-back a previous step left (a cold build writes hundreds of MB) and wait until the
    disks have had no write for `quiet_s` (at most `limit_s`) before a timed run: both tools' rebuilds are
    then timed on the same quiet disk, not on the journal work of the step before."""
    if hasattr(os, "sync"):
        os.sync()
    deadline = time.monotonic() + limit_s
    last, quiet_since = _disk_writes(), time.monotonic()
    while last and time.monotonic() < deadline:
        time.sleep(0.1)
        now = _disk_writes()
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return


def copy_backend(backend: Backend, dest: Path) -> Backend:
    """A copy the edit loop may change: src/, requirements.txt and the lock when there is one."""
    shutil.copytree(backend.src, dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("requirements.txt", "requirements.lock"):
        if (backend.root / name).is_file():
            shutil.copyfile(backend.root / name, dest / name)
    return Backend(root=dest, src=dest / "src", requirements=dest / "requirements.txt")


def bench_source_rebuild(ours: OursOutcome, backend: Backend, runs: int, scratch: Path) -> tuple[float, ...]:
    """This bundler after a one-line change, on the cache its runs left (the dependency layer is there)."""
    copy = copy_backend(backend, scratch / "edit-ours")
    spec = replace(ours.spec, source_dir=copy.src, requirements=copy.requirements)
    if not build_bundle(spec).cache_hit:  # same inputs as the runs above (a path is not an input)
        raise BenchError("the copied backend did not hit the cache: the input hash depends on the path")
    timings = []
    for run in range(runs):
        one_line_change(copy.src, run)
        # A developer's next edit comes seconds later, by when the previous build's background process has
        # linked the next dependency tree; edits back to back would time that process, not the rebuild.
        spare_ready = wait_for_spare(spec.cache_dir)
        settle()
        started = time.perf_counter()
        result = build_bundle(spec)
        timings.append(time.perf_counter() - started)
        if result.cache_hit or not result.dependencies_reused:
            raise BenchError("a source-only rebuild did not reuse the dependency layer (or did nothing)")
        if not spare_ready:
            _log(f"[bench] rebuild run {run + 1}: no linked tree was ready; the rebuild linked its own")
    _log(f"[bench] source-only rebuild: {', '.join(f'{t:.2f}' for t in timings)} s")
    return tuple(timings)


@dataclass(frozen=True)
class SynthTimings:
    noop: tuple[float, ...]
    change: tuple[float, ...]  # after the one-line change to handler.py
    shared_change: tuple[float, ...] = ()  # after the same change to a module every function imports
    shared_module: str | None = None


def bench_synth(backend: Backend, runs: int, scratch: Path) -> SynthTimings:
    """No-op synth timings and synth-after-a-one-line-change timings of this app, alternating."""
    copy = copy_backend(backend, scratch / "edit-synth")
    cdk = REPO_ROOT / "node_modules" / ".bin" / "cdk"
    if not cdk.exists():
        raise BenchError(f"{cdk} is missing: run `make setup` (npm ci) first")
    outdir = scratch / "cdk.out"
    env = {
        **os.environ,
        "PATH": os.pathsep.join(
            [
                str(REPO_ROOT / ".venv" / "bin"),
                str(REPO_ROOT / "node_modules" / ".bin"),
                os.environ.get("PATH", ""),
            ]
        ),
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    cmd = [str(cdk), "synth", "--quiet", "-c", f"backend_root={copy.root}", "--output", str(outdir)]

    def synth(what: str) -> float:
        settle()
        return _run(cmd, what=what, timeout=BUILD_TIMEOUT_S, env=env, cwd=REPO_ROOT)

    synth("cdk synth (priming: builds this copy's bundle once)")
    shared = module_every_function_imports(copy.src)
    noop: list[float] = []
    change: list[float] = []
    shared_change: list[float] = []
    for run in range(runs):
        noop.append(synth("cdk synth (nothing changed)"))
        one_line_change(copy.src, 1000 + run)
        change.append(synth("cdk synth (after a one-line change)"))
        line = f"[bench] synth run {run + 1}/{runs}: no-op {noop[-1]:.2f} s, after a change {change[-1]:.2f}"
        if shared:
            one_line_change(copy.src, 2000 + run, module=shared)
            shared_change.append(synth(f"cdk synth (after a one-line change to {shared})"))
            line += f", after a change to {shared} {shared_change[-1]:.2f}"
        _log(line + " s")
    return SynthTimings(tuple(noop), tuple(change), tuple(shared_change), shared)


def bench_sam_source_rebuild(backend: Backend, runs: int, scratch: Path) -> tuple[float, ...]:
    """`sam build --cached` after the same one-line change, on a primed SAM project of its own."""
    sam = ensure_sam()
    stage = scratch / "sam-edit-stage"
    template = stage_sam_project(backend, stage)
    build_dir, cache_dir, pip_cache = stage / "build", stage / "cache", stage / "pip-cache"
    cmd = [str(sam), "build", "--template-file", str(template), "--build-dir", str(build_dir)]
    cmd += ["--cached", "--cache-dir", str(cache_dir)]
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "PIP_CACHE_DIR": str(pip_cache)}
    _run(cmd, what="sam build --cached (priming)", timeout=BUILD_TIMEOUT_S, env=env, cwd=stage)
    timings = []
    for run in range(runs):
        one_line_change(stage / "app", run)
        settle()
        timings.append(
            _run(
                cmd,
                what="sam build --cached (after a one-line change)",
                timeout=BUILD_TIMEOUT_S,
                env=env,
                cwd=stage,
            )
        )
    _log(f"[bench] sam build --cached after a one-line change: {', '.join(f'{t:.2f}' for t in timings)} s")
    return tuple(timings)


def ensure_sam(venv: Path = SAM_VENV) -> Path:
    """`sam` from aws-sam-cli==SAM_VERSION in its own venv, created once and reused."""
    sam = venv / "bin" / "sam"
    if sam.exists():
        try:
            proc = subprocess.run(
                [str(sam), "--version"],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
            )
            if proc.returncode == 0 and SAM_VERSION in proc.stdout:
                return sam
        except OSError as exc:
            # A venv's scripts name its interpreter by absolute path: one created in another checkout (or
            # moved) cannot start. Made again from scratch.
            _log(f"[bench] {venv} does not run ({exc.strerror}): creating it again")
            shutil.rmtree(venv)
    python = venv / "bin" / "python"
    if not python.exists():
        _log(f"[bench] creating {venv} for aws-sam-cli=={SAM_VERSION}")
        _run(
            [f"python{PYTHON_VERSION}", "-m", "venv", str(venv)],
            what=f"creating the SAM venv {venv}",
            timeout=300,
        )
    _log(f"[bench] installing aws-sam-cli=={SAM_VERSION} into {venv} (once; a few minutes)")
    _run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"aws-sam-cli=={SAM_VERSION}",
        ],
        what=f"pip install aws-sam-cli=={SAM_VERSION}",
        timeout=INSTALL_TIMEOUT_S,
    )
    if not sam.exists():
        raise BenchError(f"aws-sam-cli=={SAM_VERSION} installed but {sam} is missing")
    return sam


def stage_sam_project(backend: Backend, stage: Path) -> Path:
    """A SAM project: CodeUri holds the source and requirements.txt (SAM reads it only from there)."""
    app = stage / "app"
    shutil.copytree(backend.src, app, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copyfile(backend.requirements, app / "requirements.txt")
    template = stage / "template.yaml"
    template.write_text(SAM_TEMPLATE)
    return template


def bench_sam(backend: Backend, runs: int, scratch: Path) -> ToolResult:
    sam = ensure_sam()
    stage = scratch / "sam-stage"
    template = stage_sam_project(backend, stage)
    base_env = {**os.environ, "SAM_CLI_TELEMETRY": "0"}

    def build(build_dir: Path, pip_cache: Path, cached_dir: Path | None) -> float:
        cmd = [str(sam), "build", "--template-file", str(template), "--build-dir", str(build_dir)]
        if cached_dir is not None:
            cmd += ["--cached", "--cache-dir", str(cached_dir)]
        settle()
        return _run(
            cmd,
            what="sam build" + (" --cached" if cached_dir else ""),
            timeout=BUILD_TIMEOUT_S,
            env={**base_env, "PIP_CACHE_DIR": str(pip_cache)},
            cwd=stage,
        )

    cold: list[float] = []
    sizes: tuple[int, int] | None = None
    for run in range(runs):
        build_dir = scratch / f"sam-cold-{run}"
        cold.append(build(build_dir, scratch / f"sam-pip-cache-{run}", None))
        sizes = output_sizes(build_dir / "Api", scratch)
        shutil.rmtree(build_dir)
        shutil.rmtree(scratch / f"sam-pip-cache-{run}", ignore_errors=True)
        _log(f"[bench] sam build run {run + 1}/{runs}: cold {cold[-1]:.2f} s")
    warm_build, warm_cache, warm_pip = scratch / "sam-warm", scratch / "sam-cache", scratch / "sam-pip-cache"
    build(warm_build, warm_pip, warm_cache)  # primes SAM's --cached artifact store
    warm = [build(warm_build, warm_pip, warm_cache) for _ in range(runs)]
    _log(f"[bench] sam build --cached: {', '.join(f'{w:.2f}' for w in warm)} s")
    assert sizes is not None
    return ToolResult(
        tool=f"sam build (aws-sam-cli {SAM_VERSION}, no container)",
        cold=tuple(cold),
        warm=tuple(warm),
        unzipped_bytes=sizes[0],
        zip_bytes=sizes[1],
        warm_label="--cached",
    )


def bench_pip(backend: Backend, runs: int, scratch: Path) -> ToolResult:
    base = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--platform",
        "manylinux2014_x86_64",
        "--implementation",
        "cp",
        "--python-version",
        PYTHON_VERSION,
        "--only-binary=:all:",
        "-r",
        str(backend.requirements),
    ]
    pip_cache = scratch / "pip-cache"
    env = {**os.environ, "PIP_CACHE_DIR": str(pip_cache)}
    cold: list[float] = []
    sizes: tuple[int, int] | None = None
    for run in range(runs):
        target = scratch / f"pip-cold-{run}"
        settle()
        cold.append(
            _run(
                [*base, "-t", str(target), "--no-cache-dir"],
                what="pip install -t (cold)",
                timeout=BUILD_TIMEOUT_S,
                env=env,
            )
        )
        # pip installs dependencies only; the source goes in too, so sizes compare whole bundles.
        shutil.copytree(backend.src, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        sizes = output_sizes(target, scratch)
        shutil.rmtree(target)
        _log(f"[bench] pip run {run + 1}/{runs}: cold {cold[-1]:.2f} s")
    _run(
        [*base, "-t", str(scratch / "pip-prime")],
        what="pip install -t (priming the cache)",
        timeout=BUILD_TIMEOUT_S,
        env=env,
    )
    shutil.rmtree(scratch / "pip-prime")
    warm: list[float] = []
    for run in range(runs):
        target = scratch / f"pip-warm-{run}"
        settle()
        warm.append(
            _run([*base, "-t", str(target)], what="pip install -t (warm)", timeout=BUILD_TIMEOUT_S, env=env)
        )
        shutil.rmtree(target)
    _log(f"[bench] pip warm: {', '.join(f'{w:.2f}' for w in warm)} s")
    assert sizes is not None
    return ToolResult(
        tool="pip install -t (manylinux2014_x86_64)",
        cold=tuple(cold),
        warm=tuple(warm),
        unzipped_bytes=sizes[0],
        zip_bytes=sizes[1],
        warm_label="pip cache",
        note="sizes include the backend source copied in; pip's own .pyc files are kept",
    )


def import_command(python: str, bundle: Path) -> list[str]:
    return [
        python,
        "-I",
        "-S",
        "-B",
        "-c",
        f"import sys; sys.path.insert(0, {str(bundle)!r}); import handler",
    ]


BARE_BUNDLE = "bundle-without-pyc"  # our bundle with every __pycache__ removed, under the scratch folder


def bench_imports(python: str, bundle: Path, runs: int, scratch: Path) -> tuple[float, float]:
    """(median with bytecode, median without), alternating the two so drift hits both alike."""
    bare = scratch / BARE_BUNDLE
    shutil.copytree(bundle, bare, ignore=shutil.ignore_patterns("__pycache__"))
    if not any(bundle.rglob("*.pyc")):
        _log("[bench] WARNING: the bundle has no .pyc files: the two import timings measure the same thing")
    timings: dict[Path, list[float]] = {bundle: [], bare: []}
    for directory in (bundle, bare):  # warm-up: the OS file cache, not the measurement
        _run(
            import_command(python, directory),
            what=f"import handler from {directory}",
            timeout=IMPORT_TIMEOUT_S,
        )
    for _ in range(runs):
        for directory in (bundle, bare):
            timings[directory].append(
                _run(
                    import_command(python, directory),
                    what=f"import handler from {directory}",
                    timeout=IMPORT_TIMEOUT_S,
                )
            )
    return median(timings[bundle]), median(timings[bare])


def _tool_version(cmd: Sequence[str]) -> str:
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (proc.stdout or proc.stderr).strip().splitlines()[0] if proc.returncode == 0 else "unknown"


def _brief(exc: Exception) -> str:
    """First and last line of an error: what failed, and the tool's final word on why."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    return lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"


def run_benchmark(
    backend: Backend,
    runs: int,
    *,
    skip_sam: bool,
    scratch: Path,
    skip_synth: bool = False,
    log: Callable[[str], None] = _log,
) -> Report:
    notes: list[str] = []
    load_at_start = os.getloadavg()[0]
    python = real_python()
    ours = bench_ours(backend, runs, scratch)
    ours_source_rebuild = bench_source_rebuild(ours, backend, runs, scratch)
    sam_source_rebuild: tuple[float, ...] = ()
    if skip_sam:
        sam = ToolResult(tool="sam build", note="skipped (--skip-sam)")
    else:
        try:
            sam = bench_sam(backend, runs, scratch)
            sam_source_rebuild = bench_sam_source_rebuild(backend, runs, scratch)
        except BenchError as exc:
            log(f"[bench] sam build not measured, continuing as with --skip-sam: {exc}")
            sam = ToolResult(tool="sam build", note=f"not measured: {_brief(exc)}")
    synth = SynthTimings((), ())
    if skip_synth:
        notes.append("synth timings skipped (--skip-synth)")
    else:
        try:
            synth = bench_synth(backend, runs, scratch)
        except BenchError as exc:
            log(f"[bench] synth not measured: {exc}")
            notes.append(f"synth not measured: {_brief(exc)}")
    try:
        pip = bench_pip(backend, runs, scratch)
    except BenchError as exc:
        log(f"[bench] pip install -t not measured: {exc}")
        pip = ToolResult(tool="pip install -t", note=f"not measured: {_brief(exc)}")
    with_pyc: float | None = None
    without_pyc: float | None = None
    try:
        with_pyc, without_pyc = bench_imports(python, ours.bundle_dir, runs, scratch)
    except BenchError as exc:
        # The build numbers stay worth having; the import target shows n/a with the reason in the notes.
        log(f"[bench] import time not measured: {exc}")
        notes.append(f"import time not measured: {_brief(exc)}")
    notes.append(bench_local_api.report_line(log, backend.root))  # make local-api's overhead, warm
    log(f"[bench] {notes[-1]}")
    _unzipped, zip_without_pyc = output_sizes(scratch / BARE_BUNDLE, scratch)
    if not PROBE_FILE.is_file():
        notes.append(f"{PROBE_FILE.relative_to(REPO_ROOT)} not found: the bundle was measured without it")
    package_count = sum(1 for _ in ours.bundle_dir.glob("*.dist-info"))
    root = backend.root
    label = str(root.relative_to(REPO_ROOT) if root.is_relative_to(REPO_ROOT) else root)
    environment = (
        ("host", f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"),
        ("python", f"{python} ({platform.python_version()} runs the bundler)"),
        ("installer", ours.tool),
        ("pip", _tool_version([sys.executable, "-m", "pip", "--version"]).split(" from ")[0]),
        ("sam", sam.tool if sam.cold else sam.note),
        ("backend", f"{label} ({package_count} installed distributions)"),
        # Other work shares the cores: the load says how far to trust small differences.
        ("load average (1 min)", f"{load_at_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"),
    )
    return Report(
        backend=label,
        runs=runs,
        ours=ours.result,
        sam=sam,
        pip=pip,
        import_with_bytecode=with_pyc,
        import_without_bytecode=without_pyc,
        ours_zip_without_bytecode=zip_without_pyc,
        unchanged_cache_hit=ours.unchanged_cache_hit,
        unchanged_seconds=ours.unchanged_seconds,
        ours_source_rebuild=ours_source_rebuild,
        sam_source_rebuild=sam_source_rebuild,
        synth_noop=synth.noop,
        synth_source_change=synth.change,
        synth_shared_change=synth.shared_change,
        shared_module=synth.shared_module,
        environment=environment,
        notes=tuple(notes),
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="measurements per timing; medians are reported")
    parser.add_argument(
        "--backend",
        default="apps/backend-api",
        help="backend folder with src/ and requirements.txt (relative to the repository root)",
    )
    parser.add_argument("--skip-sam", action="store_true", help="do not install or run sam build")
    parser.add_argument("--skip-synth", action="store_true", help="do not time `cdk synth` of this app")
    parser.add_argument(
        "--write-readme",
        action="store_true",
        help=f"replace the text between {README_START} and {README_END} in README.md",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        backend = resolve_backend(args.backend)
        with tempfile.TemporaryDirectory(prefix="credmate-bench-") as tmp:
            report = run_benchmark(
                backend, args.runs, skip_sam=args.skip_sam, skip_synth=args.skip_synth, scratch=Path(tmp)
            )
    except (BenchError, BundlingError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    results = render_results(report)
    print(results)
    command = "scripts/bench.py " + " ".join(sys.argv[1:] if argv is None else argv)
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    DOC_PATH.parent.mkdir(parents=True, exist_ok=True)
    DOC_PATH.write_text(render_document(report, command.strip(), generated))
    _log(f"[bench] wrote {DOC_PATH.relative_to(REPO_ROOT)} ({time.perf_counter() - started:.0f} s in all)")
    if args.write_readme:
        block = f"{results}\n\nMethod and environment: [docs/benchmark.md](docs/benchmark.md)."
        _log(f"[bench] {update_readme(README_PATH, block)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
