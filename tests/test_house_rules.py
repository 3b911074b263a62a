"""The house rules a newcomer relies on: no file too long to read, no block of code written twice.

* No tracked file over MAX_LINES lines, outside generated output, lock files and test data (EXEMPT).
* No block of MIN_BLOCK or more code lines repeated in non-test Python code, unless a comment in or just
  above one copy says why it stays (`# duplicate kept: <why>`). Lines compare with indentation, blank lines,
  comments and import statements left out, so moving or re-indenting a copy does not hide it. A block must
  hold at least three statements to count: parameter lists and record fields that look alike are shape, not
  logic. Blocks that repeat only in shape (other names, same structure) are what the `duplicates` tool of
  the development machines also lists, each pair there commented where it stays; this test keeps the exact
  ones out for good, on any machine.
"""

from __future__ import annotations

import ast
import re
import subprocess
from collections import defaultdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 600
MIN_BLOCK = 6
KEPT = "duplicate kept:"
_CLOSER = re.compile(r"^[)\]}]")
# Generated output, lock files and test data: read by tools, not people.
EXEMPT = (
    re.compile(r"^tests/fixtures/"),
    re.compile(r"(^|/)(package-lock\.json|uv\.lock|poetry\.lock|requirements[^/]*\.(lock|txt))$"),
    re.compile(r"^docs/(architecture\.svg|dependency-graph\.md|benchmark[^/]*\.md)$"),
    re.compile(r"\.(svg|png|json|lock)$"),
)


def tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    return sorted(f for f in listed if f and (REPO_ROOT / f).is_file())


def test_no_file_is_over_the_line_limit() -> None:
    too_long = []
    for name in tracked_files():
        if any(pattern.search(name) for pattern in EXEMPT):
            continue
        try:
            lines = (REPO_ROOT / name).read_text().count("\n")
        except UnicodeDecodeError:
            continue
        if lines > MAX_LINES:
            too_long.append(f"{name}: {lines} lines")
    assert not too_long, f"files over {MAX_LINES} lines (split them along a real seam): {too_long}"


def _import_lines(text: str) -> set[int]:
    """The lines of import statements (a parenthesised name list included): shared names, not logic."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return set()
    return {
        line
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for line in range(node.lineno, (node.end_lineno or node.lineno) + 1)
    }


def _code_lines(text: str) -> list[tuple[int, str, bool]]:
    """(line number, stripped code line, whether a `duplicate kept:` comment covers it) per code line."""
    found: list[tuple[int, str, bool]] = []
    kept_until = -1
    imports = _import_lines(text)
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if KEPT in line:
            kept_until = number + 40  # the comment covers the block it stands in or above
        if not line or line.startswith("#") or number in imports:
            continue
        found.append((number, line, number <= kept_until))
    return found


def _is_logic(line: str) -> bool:
    """A statement of its own: not an item of an argument list or record, nor a lone bracket."""
    return not line.endswith((",", "(", "[", "{")) and not _CLOSER.match(line)


def duplicate_blocks(files: dict[str, str]) -> list[str]:
    """Every window of MIN_BLOCK code lines found in two places, neither covered by a `duplicate kept:`."""
    places: dict[tuple[str, ...], list[tuple[str, int, bool]]] = defaultdict(list)
    for name, text in files.items():
        lines = _code_lines(text)
        for start in range(len(lines) - MIN_BLOCK + 1):
            window = lines[start : start + MIN_BLOCK]
            block = tuple(line for _n, line, _k in window)
            if sum(len(line) for line in block) < 80 or sum(map(_is_logic, block)) < 3:
                continue  # argument lists, record fields and closing brackets: shared by shape, not logic
            places[block].append((name, window[0][0], any(k for _n, _l, k in window)))
    found = []
    for block, where in places.items():
        distinct = {(name, line) for name, line, _k in where}
        if len(distinct) > 1 and not any(kept for _n, _l, kept in where):
            found.append(" ~ ".join(f"{n}:{line}" for n, line in sorted(distinct)) + f"  ({block[0][:50]})")
    return sorted(found)


def test_no_block_of_code_is_written_twice() -> None:
    sources = {
        name: (REPO_ROOT / name).read_text()
        for name in tracked_files()
        if name.endswith(".py") and not name.startswith("tests/") and "/tests/" not in name
    }
    found = duplicate_blocks(sources)
    assert not found, (
        "blocks written twice (share them, or say why one stays with `# duplicate kept: ...`):\n"
        + ("\n".join(found))
    )


def test_the_duplicate_check_finds_a_copied_block_and_honours_a_reason() -> None:
    block = "\n".join(f"    value_{i} = compute_something_long(argument_{i}, other_{i})" for i in range(6))
    a = f"def first():\n{block}\n"
    b = f"def second():\n    # moved here\n{block}\n"
    assert duplicate_blocks({"a.py": a, "b.py": b})
    kept = f"def second():\n    # duplicate kept: the two must change independently\n{block}\n"
    assert not duplicate_blocks({"a.py": a, "b.py": kept})
    assert not duplicate_blocks({"a.py": a, "b.py": "def other():\n    return 1\n"})
