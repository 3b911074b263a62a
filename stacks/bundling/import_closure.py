"""The static import closure of a backend: every import of its source, resolved against the built bundle.

Importing each handler at synth proves what runs at *init*; an import inside a function (a lazy import) runs
only when a request reaches it, so a missing package or a name a shared module no longer exports surfaces in
production (`No module named 'mangum'`, `cannot import name 'GoalValidationError'`). This module reads every
source file with `ast` (nothing is imported), collects every import with its file and line, and checks it:

* the module must resolve: a source module, a distribution installed in the bundle, the standard library of
  the target Python, or the Lambda runtime (`RUNTIME_PROVIDED`);
* `from M import N` with M in the source: N must be bound at M's module level when it runs (not only under
  `if TYPE_CHECKING:`, not removed by `del`), be a submodule, come through `from X import *` (which binds
  only X's `__all__`, or its public names without one), or M must define a module `__getattr__`;
* imports guarded by `try/except ImportError` (or `ModuleNotFoundError`, `Exception`, a bare except) whose
  handler does not raise, by `if importlib.util.find_spec("m"):` (for m and its submodules) and
  `if TYPE_CHECKING:` blocks are optional: never errors.

The source is read the way the target runs it (`Target`: the bundle's Python on Lambda's Linux): a branch of
`if sys.version_info ...` or `if sys.platform ...` the target never takes is skipped (its imports never run,
its names are never bound), and literal `importlib.import_module("m")` / `__import__("m")` calls count as
imports of m.

Dependencies imported lazily cannot be checked statically (which names a package exports is only known by
importing it): they are listed per function (`Closure.lazy_dependencies`), and verification imports them in
the isolated target interpreter; the probe wrapper imports the same list under the real runtime.

Per function (name, handler `module.attr`): the *init* closure is the handler module, its parent packages'
`__init__` and, transitively, the source modules they import at module level; the *lazy* closure is what
imports inside functions reach, transitively, from any module already reached. `impact()` answers which
functions a changed file reaches, from the source alone (for the PR diff).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from stacks.bundling.import_reader import ImportSite, ModuleInfo, Target, read_source
from stacks.bundling.spec import DEFAULT_EXCLUDES, source_files

# Modules the Lambda Python runtime puts on sys.path itself (/var/runtime): the AWS SDK and what it depends
# on, and the runtime interface client. An import of one of these resolves on Lambda even when the bundle
# does not install it. Relying on them is the backend's choice (AWS recommends bundling the SDK to pin it),
# so they are accepted here and never reported missing; when the bundle installs them, the bundle's copy
# wins and they are checked like any other dependency.
RUNTIME_PROVIDED: frozenset[str] = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3", "awslambdaric"}
)


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


@dataclass
class Closure:
    modules: dict[str, ModuleInfo]
    init_files: dict[str, list[str]]  # function -> files imported at init
    lazy_files: dict[str, list[str]]  # function -> files reached only through lazy imports
    # function -> the dependency imports init does not prove: verified by importing them in the bundle
    lazy_dependencies: dict[str, list[ImportSite]]
    problems: list[ImportProblem]

    def lazy_imports(self) -> dict[str, list[str]]:
        """function -> the dependency modules it imports lazily (build_info.json's `lazy_imports`)."""
        return {fn: sorted({d.module for d in deps}) for fn, deps in sorted(self.lazy_dependencies.items())}


def stdlib_names(python_version: str) -> frozenset[str]:
    """`sys.stdlib_module_names` of the target Python (asked of its interpreter when it is not this one)."""
    if python_version != f"{sys.version_info.major}.{sys.version_info.minor}":
        script = "import sys, json; print(json.dumps(sorted(sys.stdlib_module_names)))"
        try:
            run = [f"python{python_version}", "-I", "-S", "-c", script]
            proc = subprocess.run(run, capture_output=True, text=True, timeout=30, check=True)
            return frozenset(json.loads(proc.stdout))
        except (OSError, subprocess.SubprocessError, ValueError):
            pass  # close enough: the standard library changes little between minor versions
    return frozenset(sys.stdlib_module_names) | {"__future__"}


def installed_top_levels(bundle: Path, source_tops: Iterable[str] = ()) -> set[str]:
    """Top-level import names the bundle's installed distributions provide.

    Read from the folder itself (packages, namespace folders, modules, extension modules), so installs without
    a RECORD (pruned) still count, plus every `*.dist-info/top_level.txt` and `*.egg-info/top_level.txt`.
    """
    names: set[str] = set()
    for entry in bundle.iterdir() if bundle.is_dir() else ():
        stem = entry.name.split(".")[0]
        if entry.name.endswith((".dist-info", ".egg-info")):
            top_level = entry / "top_level.txt"
            if top_level.is_file():
                names.update(ln.strip().replace("/", ".") for ln in top_level.read_text().splitlines())
        elif entry.is_dir():
            if entry.name.isidentifier():
                names.add(entry.name)
        elif stem.isidentifier() and (
            entry.suffix in (".py", ".so", ".pyd") or ".cpython-" in entry.name or ".abi3." in entry.name
        ):
            names.add(stem)
    return {n.split(".")[0] for n in names if n} - set(source_tops)


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


class Resolver:
    """The source's modules against the bundle: what an import names, which source files it runs, and which
    names a source module exports."""

    def __init__(
        self,
        modules: Mapping[str, ModuleInfo],
        files: Sequence[tuple[str, Path]],
        stdlib: frozenset[str],
        installed: set[str] | None,
    ) -> None:
        self.modules = modules
        self.by_file = {m.file: m for m in modules.values()}
        self.source_dirs: set[str] = set()  # dotted names of source folders (namespace packages included)
        for relative, _path in (f for f in files if f[0].endswith(".py")):
            parts = relative.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                if all(p.isidentifier() for p in parts[:i]):
                    self.source_dirs.add(".".join(parts[:i]))
        self.source_tops = {n.split(".")[0] for n in (*modules, *self.source_dirs)}
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
        return "runtime" if top in RUNTIME_PROVIDED else "missing"

    def files_for(self, module: str, names: Sequence[str] = ()) -> list[str]:
        """The source files an import executes: every package __init__ along the path, the module, and for
        `from M import N` the submodule M.N when N is one."""
        parts = module.split(".")
        paths = [".".join(parts[:i]) for i in range(1, len(parts) + 1)] + [f"{module}.{n}" for n in names]
        return [self.modules[path].file for path in paths if path in self.modules]

    def reach(self, module: str, *, lazy: bool) -> set[str]:
        """The source files importing `module` runs: at init, its module-level imports and theirs; with
        `lazy`, also what imports inside functions reach, at any depth. TYPE_CHECKING imports never run."""
        files: set[str] = set()
        todo = self.files_for(module)
        while todo:
            file = todo.pop()
            if file in files:
                continue
            files.add(file)
            for site in self.by_file[file].sites:
                if (lazy or not site.lazy) and not site.type_checking and self.kind(site.module) == "source":
                    todo.extend(self.files_for(site.module, site.names))
        return files

    def closures(
        self, handlers: Sequence[tuple[str, str]]
    ) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """({function: files its handler imports at init}, {function: files only lazy imports reach})."""
        init: dict[str, list[str]] = {}
        lazy: dict[str, list[str]] = {}
        for function, handler in handlers:
            module = _handler_module(handler)
            init[function] = sorted(self.reach(module, lazy=False))
            lazy[function] = sorted(self.reach(module, lazy=True).difference(init[function]))
        return init, lazy

    def exports(self, module: str, name: str, seen: set[str] | None = None) -> bool:
        if self.is_source_module(f"{module}.{name}"):
            return True
        info = self.modules.get(module)
        if info is None:
            return False  # a namespace folder exports only its submodules
        if name in info.defined or info.has_getattr or info.unread:
            return True
        seen = seen or set()
        seen.add(module)
        return any(
            self.kind(star) != "source"  # a dependency's star export is unknown statically: accepted
            or (star not in seen and self.star_binds(star, name) and self.exports(star, name, seen))
            for star in info.stars
        )

    def star_binds(self, module: str, name: str) -> bool:
        """Whether `from module import *` binds `name` when module has it: the names of its `__all__`, or
        without one its public names (not starting with "_")."""
        info = self.modules.get(module)
        if info is None or not info.all_literal:
            return True  # a namespace folder (exports decides), or an `__all__` not read statically
        return name in info.all_names if info.all_names is not None else not name.startswith("_")

    def hidden_by_star(self, module: str, name: str, seen: set[str]) -> str | None:
        """The source module whose `from X import *` reaches `name` defined there but does not bind it."""
        info = self.modules.get(module)
        seen.add(module)
        for star in info.stars if info else ():
            if star in seen or self.kind(star) != "source":
                continue
            if not self.star_binds(star, name) and self.exports(star, name):
                return star
            found = self.hidden_by_star(star, name, seen) if self.star_binds(star, name) else None
            if found:
                return found
        return None

    def missing_name_hint(self, module: str, name: str, target: Target) -> str:
        """What to fix when `from module import name` fails: why the name is not there, where it would be."""
        # A namespace folder (or no module at all) binds nothing.
        info = self.modules.get(module) or ModuleInfo(module, module.replace(".", "/"), True)
        file = info.file
        fix = "or update the importers"
        if name in info.deleted:
            return f"{file}:{info.deleted[name]} deletes {name} (`del`): keep it there {fix}"
        if name in info.type_checking_names:
            return (
                f"module {module} ({file}) binds {name} only under `if TYPE_CHECKING:`, which never runs: "
                f"bind it outside that block {fix}"
            )
        if name in info.unreachable:
            return (
                f"{file}:{info.unreachable[name]} binds {name} only in a branch {target} never takes: "
                f"bind it in the branch that runs there {fix}"
            )
        star = self.hidden_by_star(module, name, set())
        if star is None:
            return f"module {module} ({file}) no longer defines {name}: restore it there {fix}"
        star_info = self.modules[star]
        why = (
            f"{name} is not in its `__all__`"
            if star_info.all_names is not None
            else "a name starting with '_' is not star-imported"
        )
        return (
            f"{star_info.file} defines {name}, but `from {star} import *` does not bind it ({why}): "
            f"add it to {star}.__all__, or import it from {star}"
        )


def _handler_module(handler: str) -> str:
    return handler.rpartition(".")[0].replace("/", ".")


def _check(
    resolver: Resolver, site: ImportSite, requirements: Path | None, source_dir: Path, target: Target
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
    for prefix in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):
        if not resolver.is_source_module(prefix):
            return (
                f"No module named '{prefix}'",
                f"{source_dir / prefix.replace('.', '/')}(.py) does not exist: restore it or fix the import",
            )
    for name in site.names:
        if not resolver.exports(site.module, name):
            return (
                f"cannot import name '{name}' from '{site.module}'",
                resolver.missing_name_hint(site.module, name, target),
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
    `contents`: as for read_source. The source is read as `python_version` runs it on Lambda.
    """
    target = Target.for_python(python_version)
    modules = read_source(source_dir, files, contents=contents, target=target)
    resolver = Resolver(modules, files, stdlib_names(python_version), installed)
    problems: list[ImportProblem] = []
    for function, handler in handlers:
        module = _handler_module(handler)
        if not module or not resolver.is_source_module(module):
            problems.append(
                ImportProblem(
                    ImportSite("(handler setting)", 0, module, (), False, False, False),
                    f"handler {handler}: no module '{module}' in the source",
                    f"create {source_dir / module.replace('.', '/')}.py or fix the function's handler",
                    (function,),
                )
            )
    init, lazy = resolver.closures(handlers)
    reached: dict[str, set[str]] = {}
    for function in init:
        for file in (*init[function], *lazy[function]):
            reached.setdefault(file, set()).add(function)
    all_files = not handlers
    lazy_deps: dict[str, list[ImportSite]] = {fn: [] for fn in (("*",) if all_files else init)}
    for info in sorted(modules.values(), key=lambda m: m.file):
        functions = tuple(sorted(reached.get(info.file, ())))
        if not functions and not all_files:
            continue
        for site in info.sites:
            if site.optional or (all_files and not site.lazy):
                # Without the functions, which module-level imports run at init is unknown: those are left
                # to verification, which imports each handler and names its function.
                continue
            problem = _check(resolver, site, requirements, source_dir, target)
            if problem:
                problems.append(ImportProblem(site, *problem, functions))
            elif installed is not None and resolver.kind(site.module) == "dependency":
                # Imports that run at init are proven by importing the handler; the rest are lazy here.
                for function in ("*",) if all_files else functions:
                    if site.lazy or info.file not in init.get(function, ()):
                        lazy_deps[function].append(site)
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
    init, lazy = source_reach(source_dir, handlers, excludes=excludes)
    return {
        changed: {
            "init": sorted(fn for fn, fs in init.items() if changed in fs),
            "lazy": sorted(fn for fn, fs in lazy.items() if changed in fs),
        }
        for changed in changed_files
    }


def source_reach(
    source_dir: Path, handlers: Sequence[tuple[str, str]], *, excludes: Sequence[str] | None = None
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """({function: source files its handler imports at init}, {function: files it reaches lazily}),
    files relative to `source_dir`: the dependency graph of `make graph` and of the PR diff's impact.
    Source only."""
    files = source_files(source_dir, DEFAULT_EXCLUDES if excludes is None else excludes)
    return Resolver(read_source(source_dir, files), files, frozenset(), None).closures(handlers)
