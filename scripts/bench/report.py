"""The benchmark's pure parts: timings, targets and the report docs/benchmark.md shows, and the helpers a
run uses on its inputs (the lock's pins for SAM, the one-line edit, the interleaved order of the runs).
"""

from __future__ import annotations

import ast
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

EDITED = "handler.py"  # the API function's module, which init imports
COLD_LIMIT, SYNTH_LIMIT, SERVED_LIMIT, SERVED_SECONDS = 0.3, 1.15, 0.5, 1.0
METHOD = (
    "- **Same inputs.** Both tools build `apps/backend-api`: its `src/` and its lock's pins. This bundler "
    "installs `requirements.lock` (hashes checked, `--no-deps`); SAM gets the same `name==version` lines as "
    "its `requirements.txt` (pip resolves them against the index, finding nothing to add). Both target "
    "python3.11 on x86_64 manylinux wheels, without a container.",
    "- **Whole processes.** Every figure is the wall time of a process started from the shell by this "
    "script: interpreter and CLI start-up, imports and clean-up included on both sides. The runs of a row "
    "alternate between its commands (A B A B ...), so a slow phase of this shared 2-core machine hits both.",
    "- **Cold.** Ours: `python -m scripts.bundle.build --cache-dir EMPTY` (uv's wheel cache lives in that "
    "folder, so every wheel is downloaded; it builds the dependency layer, the bytecode of what init imports "
    "and the zip). SAM: `sam build` into a fresh build folder with an empty `PIP_CACHE_DIR` (it downloads, "
    "installs and copies; it compiles no bytecode and zips nothing: `sam deploy` zips later).",
    "- **After a one-line edit.** Each run inserts one assignment line before the top-level statement "
    f"nearest the middle of `{EDITED}`, with a token unique to the run. `cdk synth` (whole app: both "
    "environments, cdk-nag, the bundle's import verification, the assembly written) after that edit "
    "against `cdk synth` with nothing changed; `sam build --cached` after the same edit in its project "
    "(`--cached` rebuilds the function whose code changed, dependencies included).",
    "- **Save-to-served.** Ours: one `scripts/local/api.py --watch` process serves the backend; a run writes "
    "the edit and polls GET /health every 10 ms until it answers 200 with a new `code_version` (which "
    "build_info.json gives every bundle): it includes noticing the write, the rebuild on the cached layer, a "
    "fresh runtime under the RIE (forked from a process that imported the dependency layer before the edit: "
    "scripts/local/zygote.py; it imports the edited source and builds the app) and the request. Verification "
    "of the edited bundle starts once that request has been answered, so it is not included. SAM: `sam build "
    "--cached` after the same edit, then a fresh RIE on its output and the same GET /health event: build, "
    "runtime start and init, request. SAM alone is the `sam build --cached` row. One untimed round of both "
    "sides comes first.",
    "- **Zip size.** Ours: the bundle's zip as deployed (with the bytecode of what init imports). SAM: its "
    "build output zipped the same way (sorted, deflate level 6), without bytecode.",
    "- **Cold start.** A fresh RIE on each output (`python -m awslambdaric`, no zygote), start plus the "
    "first GET /health (init included), after one untimed round.",
)


@dataclass(frozen=True)
class Timing:
    label: str
    values: tuple[float, ...]

    @property
    def median(self) -> float | None:
        return float(statistics.median(self.values)) if self.values else None

    def text(self, unit: str = "s") -> str:
        if not self.values:
            return "not measured"
        spread = f" ({min(self.values):.2f}-{max(self.values):.2f})" if len(self.values) > 1 else ""
        return f"{self.median:.2f} {unit}{spread}"


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    limit: str
    verdict: str  # PASS, FAIL or n/a (never PASS without a measurement)


def ratio_target(name: str, value: float | None, baseline: float | None, limit: float, what: str) -> Target:
    if value is None or not baseline:
        return Target(name, "not measured", f"<= {limit}x {what}", "n/a")
    ratio = value / baseline
    return Target(name, f"{ratio:.2f}x", f"<= {limit}x {what}", "PASS" if ratio <= limit else "FAIL")


@dataclass(frozen=True)
class Report:
    rows: Mapping[str, Timing]  # every timing, by its key in ROWS
    zip_bytes: Mapping[str, int | None]  # "ours", "sam"
    environment: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()

    def median(self, key: str) -> float | None:
        timing = self.rows.get(key)
        return timing.median if timing else None

    def targets(self) -> list[Target]:
        served = self.median("served")
        return [
            ratio_target(
                "cold bundle", self.median("cold"), self.median("sam_cold"), COLD_LIMIT, "sam build"
            ),
            ratio_target(
                "synth after a one-line edit",
                self.median("synth_edit"),
                self.median("synth_noop"),
                SYNTH_LIMIT,
                "no-op synth",
            ),
            Target(
                "save-to-served",
                "not measured" if served is None else f"{served:.2f} s",
                f"<= {SERVED_SECONDS} s",
                "n/a" if served is None else ("PASS" if served <= SERVED_SECONDS else "FAIL"),
            ),
            ratio_target(
                "save-to-served against SAM",
                served,
                self.median("sam_cached"),
                SERVED_LIMIT,
                "sam build --cached alone",
            ),
        ]


ROWS = (  # (key, what it times), in the order of the table
    ("cold", "this bundler, cold (`scripts/bundle/build.py`, empty cache)"),
    ("sam_cold", "`sam build`, cold (fresh build folder, empty pip cache)"),
    ("synth_noop", "`cdk synth`, nothing changed"),
    ("synth_edit", "`cdk synth` after the one-line edit"),
    ("sam_cached", "`sam build --cached` after the same edit"),
    ("served", "save-to-served: `make local-api WATCH=1`, write to first response showing the edit"),
    ("sam_served", "`sam build --cached` after the same edit + RIE start + the same request"),
    ("start", "cold start under the RIE: this bundler's bundle (start + first GET /health)"),
    ("sam_start", "cold start under the RIE: SAM's output"),
)


def render(report: Report, runs: int) -> str:
    lines = [f"Medians of {runs} run(s), spread (min-max) in brackets; MB = 10^6 bytes.", ""]
    lines += ["| row | median s (spread) |", "|---|---|"]
    lines += [f"| {what} | {report.rows[key].text()} |" for key, what in ROWS if key in report.rows]
    lines += ["", "| zip | MB |", "|---|---:|"]
    for key, what in (("ours", "this bundler (with init's bytecode)"), ("sam", "sam build's output, zipped")):
        size = report.zip_bytes.get(key)
        lines.append(f"| {what} | {'not measured' if size is None else f'{size / 1e6:.2f}'} |")
    lines += ["", "| target | measured | limit | result |", "|---|---|---|---|"]
    lines += [f"| {t.name} | {t.measured} | {t.limit} | **{t.verdict}** |" for t in report.targets()]
    return "\n".join(lines)


def render_document(report: Report, runs: int, command: str, generated: str) -> str:
    return "\n".join(
        [
            "# Bundling benchmark",
            "",
            f"Generated by `{command}` on {generated}; `make bench` rewrites this file.",
            "",
            "## Results",
            "",
            render(report, runs),
            "",
            "## Environment",
            "",
            *(f"- {key}: {value}" for key, value in report.environment),
            "",
            "## Method: what each side includes",
            "",
            *METHOD,
            *(["", "## Notes", "", *(f"- {n}" for n in report.notes)] if report.notes else []),
            "",
        ]
    )


def lock_pins(lock_text: str) -> str:
    """The `name==version[; markers]` lines of a hashed lock: the same pins, as a plain requirements file."""
    pins = []
    for line in lock_text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith(("#", "--")):
            pins.append(stripped.removesuffix("\\").strip())
    return "\n".join(pins) + "\n"


def middle_edit(path: Path, token: str) -> None:
    """Insert one assignment line before the top-level statement nearest the middle of `path`."""
    source = path.read_text()
    lines = source.splitlines(keepends=True)
    starts = [node.lineno - 1 for node in ast.parse(source).body] or [0]
    at = min(starts, key=lambda start: abs(start - len(lines) // 2))
    lines.insert(at, f"_BENCH_EDIT = {token!r}\n")
    path.write_text("".join(lines))


Step = tuple[str, Callable[[int], float]]


def interleaved(
    runs: int, steps: Sequence[Step], log: Callable[[str], None], *, warmup: bool = False
) -> dict[str, Timing]:
    """Each step once per run, in turn (A B A B ...); a step returns its seconds. `warmup`: one untimed
    round first (file caches, a server's first request)."""
    for key, step in steps if warmup else ():
        log(f"[bench] warm-up {key}: {step(-1):.2f} s (not counted)")
    values: dict[str, list[float]] = {key: [] for key, _step in steps}
    for n in range(runs):
        for key, step in steps:
            values[key].append(step(n))
        log(f"[bench] run {n + 1}/{runs}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in values.items()))
    return {key: Timing(key, tuple(v)) for key, v in values.items()}
