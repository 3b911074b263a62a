"""Reading one source file as the target runs it: every import with its file and line, and the names its
module level binds (see the package's docstring for what counts)."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from stacks.bundling.import_closure.conditions import (
    Target,
    found_by_test,
    is_attr,
    literal_int,
    literal_str,
    literal_strings,
    static_truth,
)

# Exception names whose handler makes an import optional (the code copes with its absence), unless the handler
# raises (see _guards_imports).
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

    def as_json(self) -> list[object]:
        """As build_info.json lists a lazy dependency import for verification and the probe."""
        return [self.module, list(self.names), self.where]


@dataclass
class ModuleInfo:
    name: str
    file: str
    is_package: bool
    defined: set[str] = field(default_factory=set)
    stars: list[str] = field(default_factory=list)  # modules this one does `from X import *` from
    has_getattr: bool = False  # a module __getattr__ or module-level globals(): any name is accepted
    sites: list[ImportSite] = field(default_factory=list)
    # `__all__` as a literal list of strings: the names `from M import *` binds. None: no `__all__` (the star
    # binds the public names). all_literal False: `__all__` is built in a way not read here (any name passes).
    all_names: set[str] | None = None
    all_literal: bool = True
    # Why a name is not in `defined`, for the hint: bound only under TYPE_CHECKING; removed by `del` (name ->
    # line); bound only in a branch the target never takes (name -> line of the `if`).
    type_checking_names: set[str] = field(default_factory=set)
    deleted: dict[str, int] = field(default_factory=dict)
    unreachable: dict[str, int] = field(default_factory=dict)

    @property
    def package(self) -> str:
        """The package a relative import in this module starts from."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


def _guards_imports(handlers: Sequence[ast.ExceptHandler]) -> bool:
    """Whether the try body's failed imports are coped with. The first handler catching ImportError is the one
    Python runs; when its body raises (a bare `raise`, or `raise SomeError(...)`), the import fails the module
    as surely as with no handler. A `raise` nested in an `if` of the handler may not run: still a guard."""
    for handler in handlers:
        types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        names = {"BaseException" if t is None else getattr(t, "id", getattr(t, "attr", None)) for t in types}
        if names & _OPTIONAL_HANDLERS:
            return not any(isinstance(stmt, ast.Raise) for stmt in handler.body)
    return False


def _target_names(node: ast.expr) -> Iterable[str]:
    if isinstance(node, ast.Name):
        yield node.id
    elif isinstance(node, ast.Starred):
        yield from _target_names(node.value)
    elif isinstance(node, (ast.Tuple, ast.List)):
        for elt in node.elts:
            yield from _target_names(elt)


def absolute_name(package: str, module: str | None, level: int) -> str:
    """The module `from <level dots><module> import` names in `package`; "" when it goes beyond the top-level
    package (level 2 needs a package two deep, as importlib's _resolve_name): Python raises ImportError."""
    if level == 0:
        return module or ""
    parts = package.split(".") if package else []
    if level > len(parts):
        return ""
    return ".".join([*parts[: len(parts) - (level - 1)], *([module] if module else [])])


def _argument(call: ast.Call, index: int, keyword: str) -> ast.expr | None:
    if len(call.args) > index:
        return call.args[index]
    return next((k.value for k in call.keywords if k.arg == keyword), None)


def _dynamic_import(node: ast.Call, info: ModuleInfo) -> str | None:
    """The absolute module a literal `importlib.import_module(...)` or `__import__(...)` call imports, None
    for any other call (a computed name cannot be read statically: left to verification and the probe).
    "" when a relative name goes beyond the top-level package (an ImportError, as for `from .. import`)."""
    name = literal_str(node.args[0]) if node.args else None
    if not name:
        return None  # computed, or empty (a ValueError, not an import)
    if isinstance(node.func, ast.Name) and node.func.id == "__import__":
        # __import__(name, globals, locals, fromlist, level): a missing fromlist entry is no error, so only
        # the module itself counts.
        level_node = _argument(node, 4, "level")
        level = 0 if level_node is None else literal_int(level_node)
        return None if level is None else absolute_name(info.package, name, level)
    if getattr(node.func, "id", None) != "import_module" and not is_attr(
        node.func, "importlib", "import_module"
    ):
        return None
    level = len(name) - len(name.lstrip("."))
    if level == 0:
        return name
    # import_module(".m", package): resolved against `package` as `from . import` is against a package.
    package = _argument(node, 1, "package")
    if isinstance(package, ast.Name) and package.id in ("__package__", "__name__"):
        anchor: str | None = info.package if package.id == "__package__" else info.name
    else:
        anchor = literal_str(package) or None
    return None if anchor is None else absolute_name(anchor, name[level:] or None, level)


@dataclass(frozen=True)
class _Where:
    """Where in the file the collector is: how an import or a name bound there counts."""

    lazy: bool = False  # in a function (or lambda) body: runs when it is called
    scoped: bool = False  # in a function or class: names bound there are not module attributes
    optional: bool = False  # in the body of a try whose handler copes with ImportError
    type_checking: bool = False  # under `if TYPE_CHECKING:`: never runs
    branch: bool = False  # may not run (a runtime `if`, try, loops, match): a `del` there may not happen
    found: frozenset[str] = frozenset()  # modules a find_spec guard found


class _Collector(ast.NodeVisitor):
    def __init__(self, info: ModuleInfo, target: Target) -> None:
        self.info = info
        self.target = target
        self.at = _Where()
        self.global_names: set[str] = set()

    def _visit(self, nodes: Iterable[ast.AST], at: _Where | None = None) -> None:
        """Visit `nodes` from `at` (in a function body, a guarded try, ...), by default from where it is."""
        outer = self.at
        self.at = at or outer
        for node in nodes:
            self.visit(node)
        self.at = outer

    @property
    def _module_level(self) -> bool:
        return not self.at.scoped and not self.at.type_checking

    # -- definitions
    def _define(self, names: Iterable[str]) -> None:
        if self.at.type_checking and not self.at.scoped:
            self.info.type_checking_names.update(names)  # never bound at run time: not an export
        elif not self.at.scoped:
            self.info.defined.update(names)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._define([node.name])
        if self._module_level and node.name == "__getattr__":
            self.info.has_getattr = True
        self._visit(node.decorator_list)
        self._visit(node.body, replace(self.at, lazy=True, scoped=True))

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._visit(ast.iter_child_nodes(node), replace(self.at, lazy=True, scoped=True))

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._define([node.name])
        self._visit(ast.iter_child_nodes(node), replace(self.at, scoped=True))

    def _dunder_all(self, target: ast.expr, names: set[str] | None, *, extend: bool) -> None:
        """`__all__` at module level, read when it is a literal list of strings (assigned, `+=`, `.extend`,
        `.append`; `names` None for anything else). Set in a branch that may not run, the lists of both
        branches count."""
        if not (self._module_level and isinstance(target, ast.Name) and target.id == "__all__"):
            return
        if names is None:
            self.info.all_literal = False
            return
        kept = self.info.all_names if (extend or self.at.branch) and self.info.all_names else set()
        self.info.all_names = kept | names

    def visit_Assign(self, node: ast.Assign | ast.AnnAssign | ast.AugAssign) -> None:
        extend = isinstance(node, ast.AugAssign)
        for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
            self._define(_target_names(target))
            if node.value is not None:  # `__all__: list[str]` alone binds nothing
                added = not isinstance(node, ast.AugAssign) or isinstance(node.op, ast.Add)
                self._dunder_all(target, literal_strings(node.value) if added else None, extend=extend)
        self.generic_visit(node)

    visit_AnnAssign = visit_AugAssign = visit_Assign

    def visit_Expr(self, node: ast.Expr) -> None:
        call = node.value
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute):
            # __all__.extend([...]) / __all__.append("x"); any other method leaves __all__ unread.
            method, arg = call.func.attr, call.args[0] if len(call.args) == 1 else None
            appended = literal_str(arg) if method == "append" else None
            names = (
                {appended} if appended is not None else literal_strings(arg) if method == "extend" else None
            )
            self._dunder_all(call.func.value, names, extend=True)
        self.generic_visit(node)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self._define(_target_names(node.target))
        self.generic_visit(node)

    def visit_While(self, node: ast.While | ast.Match | ast.For | ast.AsyncFor) -> None:
        """Loops and `match`: their bodies may or may not run."""
        if isinstance(node, (ast.For, ast.AsyncFor)):
            self._define(_target_names(node.target))
        self._visit(ast.iter_child_nodes(node), replace(self.at, branch=True))

    visit_For = visit_AsyncFor = visit_Match = visit_While

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            if item.optional_vars is not None:
                self._define(_target_names(item.optional_vars))
        self.generic_visit(node)

    visit_AsyncWith = visit_With

    def visit_Delete(self, node: ast.Delete) -> None:
        # Only a `del` that surely runs removes a name; one in a branch may not, and the name then stays.
        if not self.at.scoped and not self.at.branch:
            for name in (name for target in node.targets for name in _target_names(target)):
                self.info.defined.discard(name)
                self.info.deleted[name] = node.lineno
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        # `globals()[name] = ...` / `globals().update(...)` at module level defines names no parser can list:
        # such a module is treated like one with a module __getattr__ (any name accepted).
        if self._module_level and isinstance(node.func, ast.Name) and node.func.id == "globals":
            self.info.has_getattr = True
        module = _dynamic_import(node, self.info)
        if module is not None:
            self._site(node, module, ())
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        # `global X` in a function makes its assignment a module attribute, whenever the function runs: a
        # module-level `del X` before that does not remove it for good (added after the whole file is read).
        self.global_names.update(node.names)

    # -- guards
    def visit_Try(self, node: ast.Try | ast.TryStar) -> None:
        guarded = self.at.optional or _guards_imports(node.handlers)
        self._visit(node.body, replace(self.at, branch=True, optional=guarded))
        self._visit([*node.handlers, *node.orelse, *node.finalbody], replace(self.at, branch=True))

    visit_TryStar = visit_Try

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        taken = static_truth(node.test, self.target)
        if taken is None:
            body_found, else_found = found_by_test(node.test)
            type_checking = self.at.type_checking or _is_type_checking(node.test)
            body = replace(
                self.at, branch=True, type_checking=type_checking, found=self.at.found | body_found
            )
            self._visit(node.body, body)
            self._visit(node.orelse, replace(self.at, branch=True, found=self.at.found | else_found))
            return
        # Judged as the target runs it: the branch it never takes is not read (its imports never run, its
        # names are never bound), and the one it takes is read as unconditional code.
        live, dead = (node.body, node.orelse) if taken else (node.orelse, node.body)
        if self._module_level and dead:  # what it would bind, so a hint can say why a name is missing
            scratch = ModuleInfo(self.info.name, self.info.file, self.info.is_package)
            _Collector(scratch, self.target)._visit(dead)
            for name in scratch.defined:
                self.info.unreachable.setdefault(name, node.lineno)
        self._visit(live)

    # -- imports
    def _site(
        self, node: ast.stmt | ast.expr, module: str, names: tuple[str, ...], star: bool = False
    ) -> None:
        found = any(module == m or module.startswith(m + ".") for m in self.at.found)
        optional = self.at.optional or self.at.type_checking or found
        site = ImportSite(
            self.info.file, node.lineno, module, names, self.at.lazy, optional, self.at.type_checking, star
        )
        self.info.sites.append(site)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._define([alias.asname or alias.name.split(".")[0]])
            self._site(node, alias.name, ())

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = absolute_name(self.info.package, node.module, node.level)
        star = any(a.name == "*" for a in node.names)
        names = tuple(a.name for a in node.names if a.name != "*")
        self._define(a.asname or a.name for a in node.names if a.name != "*")
        if star and self._module_level and module:
            self.info.stars.append(module)
        self._site(node, module, names, star)


def _is_type_checking(test: ast.expr) -> bool:
    return getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == "TYPE_CHECKING"


def read_source(
    source_dir: Path,
    files: Iterable[tuple[str, Path]],
    *,
    contents: Mapping[str, bytes] | None = None,
    target: Target | None = None,
) -> dict[str, ModuleInfo]:
    """Every .py file of the source, parsed as `target` runs it. A syntax error is left to verification (which
    names it).

    `contents`: the files' bytes where the caller has already read them; `target`: the bundle's Python
    (default: this interpreter's version, on Lambda)."""
    target = target or Target(sys.version_info[:2])
    modules: dict[str, ModuleInfo] = {}
    for relative, path in (f for f in files if f[0].endswith(".py")):
        parts = relative.removesuffix(".py").split("/")
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        if not name or not all(part.isidentifier() for part in name.split(".")):
            continue  # not importable by name (e.g. migrations/versions/0001_x.py): loaded by path, if at all
        data = contents[relative] if contents is not None and relative in contents else path.read_bytes()
        info = modules[name] = ModuleInfo(name, relative, is_package)
        try:
            tree = ast.parse(data, filename=relative)
        except (SyntaxError, ValueError):
            continue
        collector = _Collector(info, target)
        collector.visit(tree)
        info.defined |= collector.global_names
    return modules
