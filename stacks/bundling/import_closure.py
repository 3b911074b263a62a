"""The static import closure of a backend: every import of its source, resolved against the built bundle.

Importing each handler at synth proves what runs at *init*; an import inside a function (a lazy import) runs
only when a request reaches it, so a missing package or a name a shared module no longer exports surfaces in
production (`No module named 'mangum'`, `cannot import name 'GoalValidationError'`). This module reads every
source file with `ast` (nothing is imported), collects every import with its file and line, and checks it:

* the module must resolve: a source module, a distribution installed in the bundle, the standard library of
  the target Python, or the Lambda runtime (`RUNTIME_PROVIDED`);
* `from M import N` with M in the source: N must be defined at M's module level, be a submodule, come through
  `from X import *`, or M must define a module `__getattr__`;
* imports guarded by `try/except ImportError` (or `ModuleNotFoundError`, `Exception`, a bare except) and
  `if TYPE_CHECKING:` blocks are optional: never errors.

Dependencies imported lazily cannot be checked statically (which names a package exports is only known by
importing it): they are listed per function (`Closure.lazy_dependencies`), and verification imports them in
the isolated target interpreter; the probe wrapper imports the same list under the real runtime.

Per function (name, handler `module.attr`): the *init* closure is the handler module, its parent packages'
`__init__` and, transitively, the source modules they import at module level; the *lazy* closure is what
imports inside functions reach, transitively, from any module already reached. `impact()` answers which
functions a changed file reaches, from the source alone (for the PR diff).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stacks.bundling.spec import DEFAULT_EXCLUDES, source_files

# Modules the Lambda Python runtime puts on sys.path itself (/var/runtime): the AWS SDK and what it depends
# on, and the runtime interface client. An import of one of these resolves on Lambda even when the bundle
# does not install it. Relying on them is the backend's choice (AWS recommends bundling the SDK to pin it),
# so they are accepted here and never reported missing; when the bundle installs them, the bundle's copy
# wins and they are checked like any other dependency.
RUNTIME_PROVIDED: frozenset[str] = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3", "awslambdaric"}
)

# Exception names whose handler makes an import optional (the code copes with its absence).
_OPTIONAL_HANDLERS = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})


@dataclass(frozen=True)
class ImportSite:
    """One import statement (or one module of `import a, b`)."""

    file: str  # relative to the source folder, POSIX
    line: int
    module: str  # absolute dotted name ("" for an unresolvable relative import)
    names: tuple[str, ...]  # `from M import a, b`; () for `import M`
    lazy: bool  # inside a function body
    optional: bool  # guarded by try/except ImportError or under TYPE_CHECKING
    type_checking: bool
    star: bool = False

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class ModuleInfo:
    name: str
    file: str
    is_package: bool
    defined: set[str] = field(default_factory=set)
    stars: list[str] = field(default_factory=list)  # modules this one does `from X import *` from
    has_getattr: bool = False  # a module __getattr__ or module-level globals(): any name is accepted
    sites: list[ImportSite] = field(default_factory=list)


@dataclass(frozen=True)
class ImportProblem:
    site: ImportSite
    message: str
    hint: str
    functions: tuple[str, ...]  # () when the functions are not known (BundleSpec.handlers empty)

    def __str__(self) -> str:
        where = (
            "reached by " + ", ".join(f"function {fn}" for fn in self.functions)
            if self.functions
            else "functions not known: every source file is checked"
        )
        when = "inside a function" if self.site.lazy else "at module level"
        return f"{self.site.where}: {self.message} ({when}; {where})\n    hint: {self.hint}"


@dataclass(frozen=True)
class LazyDependency:
    """A dependency imported where init does not prove it: verified by importing it in the bundle."""

    module: str
    names: tuple[str, ...]
    where: str

    def as_json(self) -> list[object]:
        return [self.module, list(self.names), self.where]


@dataclass
class Closure:
    modules: dict[str, ModuleInfo]
    init_files: dict[str, list[str]]  # function -> files imported at init
    lazy_files: dict[str, list[str]]  # function -> files reached only through lazy imports
    lazy_dependencies: dict[str, list[LazyDependency]]  # function -> dependency imports to verify
    problems: list[ImportProblem]

    def lazy_imports(self) -> dict[str, list[str]]:
        """function -> the dependency modules it imports lazily (build_info.json's `lazy_imports`)."""
        return {fn: sorted({d.module for d in deps}) for fn, deps in sorted(self.lazy_dependencies.items())}


# ---------------------------------------------------------------------------------------------------------
# Reading one file


def _handler_names(handler: ast.ExceptHandler) -> set[str]:
    if handler.type is None:
        return {"BaseException"}
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    names = set()
    for node in types:
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _target_names(node: ast.expr) -> Iterable[str]:
    if isinstance(node, ast.Name):
        yield node.id
    elif isinstance(node, ast.Starred):
        yield from _target_names(node.value)
    elif isinstance(node, (ast.Tuple, ast.List)):
        for elt in node.elts:
            yield from _target_names(elt)


class _Collector(ast.NodeVisitor):
    def __init__(self, info: ModuleInfo) -> None:
        self.info = info
        self.function_depth = 0
        self.scope_depth = 0  # functions and classes: names bound there are not module attributes
        self.optional_depth = 0
        self.type_checking_depth = 0

    # -- definitions
    def _define(self, names: Iterable[str]) -> None:
        if self.scope_depth == 0:
            self.info.defined.update(names)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._define([node.name])
        if self.scope_depth == 0 and node.name == "__getattr__":
            self.info.has_getattr = True
        for decorator in node.decorator_list:
            self.visit(decorator)
        self.function_depth += 1
        self.scope_depth += 1
        for stmt in node.body:
            self.visit(stmt)
        self.function_depth -= 1
        self.scope_depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.function_depth += 1
        self.scope_depth += 1
        self.generic_visit(node)
        self.function_depth -= 1
        self.scope_depth -= 1

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._define([node.name])
        self.scope_depth += 1
        self.generic_visit(node)
        self.scope_depth -= 1

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._define(_target_names(target))
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._define(_target_names(node.target))
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._define(_target_names(node.target))
        self.generic_visit(node)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self._define(_target_names(node.target))
        self.generic_visit(node)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self._define(_target_names(node.target))
        self.generic_visit(node)

    visit_AsyncFor = visit_For

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            if item.optional_vars is not None:
                self._define(_target_names(item.optional_vars))
        self.generic_visit(node)

    visit_AsyncWith = visit_With

    def visit_Call(self, node: ast.Call) -> None:
        # `globals()[name] = ...` / `globals().update(...)` at module level defines names no parser can list:
        # such a module is treated like one with a module __getattr__ (any name accepted).
        if self.scope_depth == 0 and isinstance(node.func, ast.Name) and node.func.id == "globals":
            self.info.has_getattr = True
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        # `global X` in a function makes its assignment a module attribute.
        self.info.defined.update(node.names)

    # -- guards
    def visit_Try(self, node: ast.Try) -> None:
        optional = any(_handler_names(h) & _OPTIONAL_HANDLERS for h in node.handlers)
        self.optional_depth += optional
        for stmt in node.body:
            self.visit(stmt)
        self.optional_depth -= optional
        for part in (*node.handlers, *node.orelse, *node.finalbody):
            self.visit(part)

    visit_TryStar = visit_Try  # type: ignore[assignment]

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        if _is_type_checking(node.test):
            self.type_checking_depth += 1
            for stmt in node.body:
                self.visit(stmt)
            self.type_checking_depth -= 1
        else:
            for stmt in node.body:
                self.visit(stmt)
        for stmt in node.orelse:
            self.visit(stmt)

    # -- imports
    def _site(self, node: ast.stmt, module: str, names: tuple[str, ...], star: bool = False) -> None:
        self.info.sites.append(
            ImportSite(
                file=self.info.file,
                line=node.lineno,
                module=module,
                names=names,
                lazy=self.function_depth > 0,
                optional=self.optional_depth > 0 or self.type_checking_depth > 0,
                type_checking=self.type_checking_depth > 0,
                star=star,
            )
        )

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._define([alias.asname or alias.name.split(".")[0]])
            self._site(node, alias.name, ())

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = _absolute(self.info, node.module, node.level)
        star = any(a.name == "*" for a in node.names)
        names = tuple(a.name for a in node.names if a.name != "*")
        self._define(a.asname or a.name for a in node.names if a.name != "*")
        if star and self.scope_depth == 0 and module:
            self.info.stars.append(module)
        self._site(node, module, names, star)


def _absolute(info: ModuleInfo, module: str | None, level: int) -> str:
    if level == 0:
        return module or ""
    package = info.name if info.is_package else info.name.rpartition(".")[0]
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        return ""  # beyond the top: Python raises ImportError; reported as unresolvable
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, *([module] if module else [])])


def _module_name(relative: str) -> tuple[str, bool]:
    parts = relative[: -len(".py")].split("/")
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def read_source(
    source_dir: Path,
    files: Iterable[tuple[str, Path]],
    *,
    contents: Mapping[str, bytes] | None = None,
) -> dict[str, ModuleInfo]:
    """Every .py file of the source, parsed. A syntax error is left to verification (which names it).

    `contents`: the files' bytes where the caller has already read them."""
    modules: dict[str, ModuleInfo] = {}
    for relative, path in files:
        if not relative.endswith(".py"):
            continue
        name, is_package = _module_name(relative)
        if not name or not all(part.isidentifier() for part in name.split(".")):
            continue  # not importable by name (e.g. migrations/versions/0001_x.py): loaded by path, if at all
        data = contents[relative] if contents is not None and relative in contents else path.read_bytes()
        modules[name] = _parse(name, relative, is_package, data)
    return modules


def _parse(name: str, relative: str, is_package: bool, data: bytes) -> ModuleInfo:
    info = ModuleInfo(name=name, file=relative, is_package=is_package)
    try:
        tree = ast.parse(data, filename=relative)
    except (SyntaxError, ValueError):
        return info
    _Collector(info).visit(tree)
    return info


# ---------------------------------------------------------------------------------------------------------
# Resolving


def stdlib_names(python_version: str) -> frozenset[str]:
    """`sys.stdlib_module_names` of the target Python (asked of its interpreter when it is not this one)."""
    host = f"{sys.version_info.major}.{sys.version_info.minor}"
    if python_version != host:
        try:
            proc = subprocess.run(
                [
                    f"python{python_version}",
                    "-I",
                    "-S",
                    "-c",
                    "import sys, json; print(json.dumps(sorted(sys.stdlib_module_names)))",
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
            return frozenset(json.loads(proc.stdout))
        except (OSError, subprocess.SubprocessError, ValueError):
            pass  # close enough: the standard library changes little between minor versions
    return frozenset(sys.stdlib_module_names) | {"__future__"}


def installed_top_levels(bundle: Path, source_tops: Iterable[str] = ()) -> set[str]:
    """Top-level import names the bundle's installed distributions provide.

    Read from the folder itself (packages, namespace folders, modules, extension modules), so installs without
    a RECORD (pruned) still count, plus every `*.dist-info/top_level.txt` and `*.egg-info/top_level.txt`.
    """
    skip = set(source_tops)
    names: set[str] = set()
    if not bundle.is_dir():
        return names
    for entry in bundle.iterdir():
        if entry.name.endswith((".dist-info", ".egg-info")):
            top_level = entry / "top_level.txt"
            if top_level.is_file():
                names.update(ln.strip().replace("/", ".") for ln in top_level.read_text().splitlines())
            continue
        if entry.is_dir():
            if entry.name.isidentifier():
                names.add(entry.name)
        elif entry.suffix in (".py", ".so", ".pyd") or ".cpython-" in entry.name or ".abi3." in entry.name:
            stem = entry.name.split(".")[0]
            if stem.isidentifier():
                names.add(stem)
    return {n.split(".")[0] for n in names if n} - skip


class _Resolver:
    def __init__(
        self,
        modules: Mapping[str, ModuleInfo],
        source_dirs: set[str],
        stdlib: frozenset[str],
        installed: set[str] | None,
    ) -> None:
        self.modules = modules
        self.source_dirs = source_dirs  # dotted names of source folders (namespace packages included)
        self.source_tops = {n.split(".")[0] for n in (*modules, *source_dirs)}
        self.stdlib = stdlib
        self.installed = installed  # None: source-only analysis, dependencies are not known

    def is_source_module(self, name: str) -> bool:
        return name in self.modules or name in self.source_dirs

    def kind(self, module: str) -> str:
        top = module.split(".")[0]
        if top in self.source_tops:
            return "source"
        if top in self.stdlib:
            return "stdlib"
        if self.installed is None or top in self.installed:
            return "dependency"
        if top in RUNTIME_PROVIDED:
            return "runtime"
        return "missing"

    def files_for(self, module: str, names: Sequence[str] = ()) -> list[str]:
        """The source files an import executes: every package __init__ along the path, the module, and for
        `from M import N` the submodule M.N when N is one."""
        parts = module.split(".")
        files = []
        for i in range(1, len(parts) + 1):
            info = self.modules.get(".".join(parts[:i]))
            if info:
                files.append(info.file)
        for name in names:
            sub = self.modules.get(f"{module}.{name}")
            if sub:
                files.append(sub.file)
        return files

    def exports(self, module: str, name: str, seen: set[str] | None = None) -> bool:
        if self.is_source_module(f"{module}.{name}"):
            return True
        info = self.modules.get(module)
        if info is None:
            return False  # a namespace folder exports only its submodules
        if name in info.defined or info.has_getattr:
            return True
        seen = seen or set()
        seen.add(module)
        for star in info.stars:
            if self.kind(star) != "source":
                return True  # a dependency's star export is unknown statically: accepted
            if star not in seen and self.exports(star, name, seen):
                return True
        return False


def _source_dirs(files: Iterable[tuple[str, Path]]) -> set[str]:
    dirs = set()
    for relative, _path in files:
        if not relative.endswith(".py"):
            continue
        parts = relative.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            if all(p.isidentifier() for p in parts[:i]):
                dirs.add(".".join(parts[:i]))
    return dirs


# ---------------------------------------------------------------------------------------------------------
# Closures per function


def _reach(
    resolver: _Resolver, handlers: Sequence[tuple[str, str]]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    by_file = {m.file: m for m in resolver.modules.values()}
    init: dict[str, list[str]] = {}
    lazy: dict[str, list[str]] = {}
    for function, handler in handlers:
        module = handler.rpartition(".")[0].replace("/", ".")
        start = resolver.files_for(module)
        init_set: set[str] = set()
        todo = list(start)
        while todo:  # module-level, non-TYPE_CHECKING imports of what init imports
            file = todo.pop()
            if file in init_set:
                continue
            init_set.add(file)
            for site in by_file[file].sites:
                if not site.lazy and not site.type_checking and resolver.kind(site.module) == "source":
                    todo.extend(resolver.files_for(site.module, site.names))
        lazy_set: set[str] = set()
        todo = [
            f
            for file in init_set
            for site in by_file[file].sites
            if site.lazy and not site.type_checking and resolver.kind(site.module) == "source"
            for f in resolver.files_for(site.module, site.names)
        ]
        while todo:  # anything a lazily reached module imports, at any level
            file = todo.pop()
            if file in init_set or file in lazy_set:
                continue
            lazy_set.add(file)
            for site in by_file[file].sites:
                if not site.type_checking and resolver.kind(site.module) == "source":
                    todo.extend(resolver.files_for(site.module, site.names))
        init[function] = sorted(init_set)
        lazy[function] = sorted(lazy_set)
    return init, lazy


def listed_in_requirements(requirements: Path | None, top: str) -> bool:
    """Whether a requirements file names a distribution called like import name `top` (normalised)."""
    if requirements is None or not requirements.is_file():
        return False
    wanted = re.sub(r"[-_.]+", "_", top).lower()
    for line in requirements.read_text().splitlines():
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        comment = line.lstrip().startswith(("#", "-"))
        if match and not comment and re.sub(r"[-_.]+", "_", match.group(1)).lower() == wanted:
            return True
    return False


def _check(
    resolver: _Resolver, site: ImportSite, requirements: Path | None, source_dir: Path
) -> tuple[str, str] | None:
    """(message, hint) when the import fails on Lambda, None when it resolves (or is left to verification)."""
    if not site.module:
        return (
            "relative import beyond the top-level package",
            "a module at the source root cannot use `from .. import`: use an absolute import",
        )
    kind = resolver.kind(site.module)
    if kind == "missing":
        top = site.module.split(".")[0]
        where = requirements if requirements is not None else "requirements.txt"
        if listed_in_requirements(requirements, top):
            return (
                f"No module named '{site.module}'",
                f"{top} is listed in {where} but installs no module '{top}' for the target runtime",
            )
        return (
            f"No module named '{site.module}'",
            f"{top} is not in {where}: add it there (pinned); no source module and no installed package "
            f"provides '{top}'",
        )
    if kind != "source":
        return None
    parts = site.module.split(".")
    for i in range(1, len(parts) + 1):
        prefix = ".".join(parts[:i])
        if not resolver.is_source_module(prefix):
            return (
                f"No module named '{prefix}'",
                f"{source_dir / prefix.replace('.', '/')}(.py) does not exist: restore it or fix the import",
            )
    for name in site.names:
        if not resolver.exports(site.module, name):
            info = resolver.modules.get(site.module)
            file = info.file if info else site.module.replace(".", "/")
            return (
                f"cannot import name '{name}' from '{site.module}'",
                f"module {site.module} ({file}) no longer defines {name}: restore it there or update "
                "the importers",
            )
    return None


def analyze(
    source_dir: Path,
    files: Sequence[tuple[str, Path]],
    handlers: Sequence[tuple[str, str]],
    *,
    installed: set[str] | None,
    python_version: str,
    requirements: Path | None = None,
    contents: Mapping[str, bytes] | None = None,
) -> Closure:
    """The closure of `files` (relative path, file) for `handlers` (function, `module.attr`).

    `installed` is the bundle's top-level names (None: source only, dependencies are not judged). Problems are
    only reported for files some function reaches. Without handlers, every file's imports inside functions
    are checked (module-level ones are left to verification's handler imports) and recorded under "*".
    `contents`: as for read_source.
    """
    modules = read_source(source_dir, files, contents=contents)
    resolver = _Resolver(modules, _source_dirs(files), stdlib_names(python_version), installed)
    problems: list[ImportProblem] = []
    for function, handler in handlers:
        module = handler.rpartition(".")[0].replace("/", ".")
        if not module or not resolver.is_source_module(module):
            problems.append(
                ImportProblem(
                    ImportSite("(handler setting)", 0, module, (), False, False, False),
                    f"handler {handler}: no module '{module}' in the source",
                    f"create {source_dir / module.replace('.', '/')}.py or fix the function's handler",
                    (function,),
                )
            )
    init, lazy = _reach(resolver, handlers)
    reached: dict[str, set[str]] = {}
    for function in init:
        for file in (*init[function], *lazy[function]):
            reached.setdefault(file, set()).add(function)
    all_files = not handlers
    lazy_deps: dict[str, list[LazyDependency]] = {fn: [] for fn, _h in handlers}
    if all_files:
        lazy_deps["*"] = []
    for info in sorted(modules.values(), key=lambda m: m.file):
        functions = tuple(sorted(reached.get(info.file, ())))
        if not functions and not all_files:
            continue
        for site in info.sites:
            if site.optional or (all_files and not site.lazy):
                # Without the functions, which module-level imports run at init is unknown: those are left
                # to verification, which imports each handler and names its function.
                continue
            problem = _check(resolver, site, requirements, source_dir)
            if problem:
                problems.append(ImportProblem(site, problem[0], problem[1], functions))
                continue
            if resolver.kind(site.module) != "dependency" or installed is None:
                continue
            dependency = LazyDependency(site.module, site.names, site.where)
            for function in functions if not all_files else ("*",):
                # Imports that run at init are proven by importing the handler; the rest are lazy here.
                runs_at_init = not site.lazy and info.file in init.get(function, ())
                if not runs_at_init:
                    lazy_deps[function].append(dependency)
    return Closure(modules, init, lazy, lazy_deps, problems)


def closure_error(problems: Sequence[ImportProblem]) -> str:
    return "import check failed (the bundle would not run on Lambda):\n  " + "\n  ".join(
        str(p) for p in problems
    )


def impact(
    source_dir: Path,
    handlers: Sequence[tuple[str, str]],
    changed_files: Iterable[str],
    *,
    excludes: Sequence[str] | None = None,
) -> dict[str, dict[str, list[str]]]:
    """{changed file: {"init": [functions importing it at init], "lazy": [functions reaching it lazily]}}.

    Source only (no bundle needed): for the PR diff. `changed_files` are relative to `source_dir`.
    """
    files = source_files(source_dir, DEFAULT_EXCLUDES if excludes is None else excludes)
    modules = read_source(source_dir, files)
    resolver = _Resolver(
        modules, _source_dirs(files), stdlib_names(f"{sys.version_info.major}.{sys.version_info.minor}"), None
    )
    init, lazy = _reach(resolver, handlers)
    return {
        changed: {
            "init": sorted(fn for fn, fs in init.items() if changed in fs),
            "lazy": sorted(fn for fn, fs in lazy.items() if changed in fs),
        }
        for changed in changed_files
    }
