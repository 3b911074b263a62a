"""The bundler package's house rules: plain Python without CDK, one module per job, and every name imported
from the module that defines it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = REPO_ROOT / "stacks" / "bundling"
CDK_MODULES = ("aws_cdk", "constructs", "jsii")
# Where the repository's Python lives (the sample backend is not a bundler client).
CLIENT_ROOTS = ("app.py", "stacks", "scripts", "tests", "lambda_src")
# The jobs build.py hands to other modules, each with the entry points that must be defined there.
JOBS = {
    "spec.py": {"source_files", "is_excluded", "bytecode_modules_for"},
    "input_hash.py": {"input_hash", "installer_identity", "dependency_key", "host_can_compile"},
    "install.py": {"requirements_file", "prepare_wheelhouse", "install_dependencies", "prune_installed"},
    "indexes.py": {"installer_environment", "redact", "auth_refused"},
}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _imported_modules(tree: ast.Module) -> list[tuple[int, str]]:
    """Every module an import statement names, at any depth (lazy imports inside functions included)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.extend(
                [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
            )
    return found


def _top_level(tree: ast.Module) -> dict[str, type[ast.stmt]]:
    """Names a module defines itself (functions, classes, assignments), not the ones it imports."""
    names: dict[str, type[ast.stmt]] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = type(node)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update((t.id, type(node)) for t in targets if isinstance(t, ast.Name))
    return names


def _functions(tree: ast.Module) -> set[str]:
    return {
        name for name, kind in _top_level(tree).items() if kind in (ast.FunctionDef, ast.AsyncFunctionDef)
    }


def _python_files() -> list[Path]:
    files: list[Path] = []
    for root in CLIENT_ROOTS:
        path = REPO_ROOT / root
        files.extend([path] if path.is_file() else sorted(path.rglob("*.py")))
    return files


def test_no_bundler_module_imports_cdk() -> None:
    # The benchmark, the harness and the scripts import the bundler without starting jsii; only
    # stacks/constructs/lambda_bundle.py turns a bundle into CDK code.
    offending = [
        f"{path.relative_to(REPO_ROOT)}:{line} imports {module}"
        for path in sorted(PACKAGE.glob("*.py"))
        for line, module in _imported_modules(_tree(path))
        if module.split(".")[0] in CDK_MODULES
    ]
    assert not offending, "\n".join(offending)


def test_importing_the_whole_bundler_loads_no_cdk() -> None:
    # Transitive imports too (a bundler module importing a helper that imports aws_cdk): a fresh interpreter.
    modules = sorted(f"stacks.bundling.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {CDK_MODULES!r}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "stacks.bundling.build" in modules and "stacks.bundling.spec" in modules
    assert out.strip() == "[]", f"importing stacks.bundling loads CDK modules: {out.strip()}"


def test_spec_imports_no_other_bundler_module() -> None:
    # Every step imports spec.py at module level; one import back would be a cycle.
    bundler = [
        f"line {line}: {module}"
        for line, module in _imported_modules(_tree(PACKAGE / "spec.py"))
        if module.startswith("stacks")
    ]
    assert not bundler, f"stacks/bundling/spec.py imports {bundler}"


@pytest.mark.parametrize("module", sorted(JOBS))
def test_each_job_lives_in_its_module_and_not_in_build(module: str) -> None:
    defined = _functions(_tree(PACKAGE / module))
    assert JOBS[module] <= defined, f"stacks/bundling/{module} lacks {sorted(JOBS[module] - defined)}"
    # build.py orchestrates: it defines none of another module's functions (no copy, no wrapper by the
    # same name)
    in_build = _functions(_tree(PACKAGE / "build.py")) & defined
    assert not in_build, f"stacks/bundling/build.py defines {sorted(in_build)}, which belong in {module}"


def test_build_defines_the_orchestration_only() -> None:
    top = _top_level(_tree(PACKAGE / "build.py"))
    # The shared types and constants live in spec.py, what identifies the bundler in input_hash.py.
    classes = sorted(name for name, kind in top.items() if kind is ast.ClassDef)
    constants = sorted(name for name, kind in top.items() if kind in (ast.Assign, ast.AnnAssign))
    assert not classes and not constants, f"stacks/bundling/build.py defines {classes + constants}"
    assert "build_bundle" in top and "dependency_layer" in top


def test_every_bundler_name_is_imported_from_its_home() -> None:
    # No re-export: `from stacks.bundling.X import name` must name the module that defines it (a test that
    # patches a re-exported name patches a copy no code reads).
    homes = {p.stem: _top_level(_tree(p)) for p in PACKAGE.glob("*.py")}
    wrong: list[str] = []
    for path in _python_files():
        for node in ast.walk(_tree(path)):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("stacks.bundling."):
                continue
            module = (node.module or "").removeprefix("stacks.bundling.")
            wrong.extend(
                f"{path.relative_to(REPO_ROOT)}:{node.lineno}: {alias.name} from stacks.bundling.{module}"
                for alias in node.names
                if module in homes and alias.name not in homes[module]
            )
    assert not wrong, "imported from a module that does not define it:\n" + "\n".join(wrong)
