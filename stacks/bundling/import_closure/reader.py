"""Reading one source file as the target runs it: every import with its file and line, and the names its
module level binds (see the package's docstring for what counts)."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
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


def _guards_imports(handlers: Sequence[ast.ExceptHandler]) -> bool:
    """Whether the try body's failed imports are coped with. The first handler catching ImportError is the one
    Python runs; when its body raises (a bare `raise`, or `raise SomeError(...)`), the import fails the module
    as surely as with no handler. A `raise` nested in an `if` of the handler may not run: still a guard."""
    for handler in handlers:
        if _handler_names(handler) & _OPTIONAL_HANDLERS:
            return not any(isinstance(stmt, ast.Raise) for stmt in handler.body)
    return False


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


# -- literal dynamic imports


def _dynamic_import(node: ast.Call, info: ModuleInfo) -> str | None:
    """The absolute module a literal `importlib.import_module(...)` or `__import__(...)` call imports, None
    for any other call (a computed name cannot be read statically: left to verification and the probe).
    "" when a relative name goes beyond the top-level package (an ImportError, as for `from .. import`)."""
    func = node.func
    name = literal_str(node.args[0]) if node.args else None
    if not name:
        return None  # computed, or empty (a ValueError, not an import)
    if isinstance(func, ast.Name) and func.id == "__import__":
        # __import__(name, globals, locals, fromlist, level): a missing fromlist entry is no error, so only
        # the module itself counts.
        level_node = (
            node.args[4]
            if len(node.args) > 4
            else next((k.value for k in node.keywords if k.arg == "level"), None)
        )
        level = 0 if level_node is None else literal_int(level_node)
        return None if level is None else absolute_name(info, name, level)
    is_import_module = (isinstance(func, ast.Name) and func.id == "import_module") or is_attr(
        func, "importlib", "import_module"
    )
    if not is_import_module:
        return None
    level = len(name) - len(name.lstrip("."))
    if level == 0:
        return name
    # import_module(".m", package): resolved against `package` as `from . import` is against a package.
    package = (
        node.args[1]
        if len(node.args) > 1
        else next((k.value for k in node.keywords if k.arg == "package"), None)
    )
    if isinstance(package, ast.Name) and package.id == "__package__":
        anchor = info
    elif isinstance(package, ast.Name) and package.id == "__name__":
        anchor = ModuleInfo(info.name, info.file, is_package=True)
    elif literal_str(package):
        anchor = ModuleInfo(str(literal_str(package)), info.file, is_package=True)
    else:
        return None
    return absolute_name(anchor, name[level:] or None, level)


class _Collector(ast.NodeVisitor):
    def __init__(self, info: ModuleInfo, target: Target) -> None:
        self.info = info
        self.target = target
        self.function_depth = 0
        self.scope_depth = 0  # functions and classes: names bound there are not module attributes
        self.optional_depth = 0
        self.type_checking_depth = 0
        # Branches that may or may not run (a runtime `if`, try, loops, match): a `del` there may not happen.
        self.flow_depth = 0
        self.found: list[frozenset[str]] = []  # modules find_spec found, per enclosing branch
        self.global_names: set[str] = set()

    def collect(self, tree: ast.AST) -> None:
        self.visit(tree)
        # `global X` in a function makes its assignment a module attribute, whenever the function runs: a
        # module-level `del X` before that does not remove it for good.
        self.info.defined |= self.global_names

    # -- definitions
    def _define(self, names: Iterable[str]) -> None:
        if self.scope_depth:
            return
        if self.type_checking_depth:
            self.info.type_checking_names.update(names)  # never bound at run time: not an export
        else:
            self.info.defined.update(names)

    @property
    def _module_level(self) -> bool:
        return self.scope_depth == 0 and self.type_checking_depth == 0

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._define([node.name])
        if self._module_level and node.name == "__getattr__":
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

    def _dunder_all(self, target: ast.expr, names: set[str] | None, *, extend: bool) -> None:
        """`__all__` at module level, read when it is a literal list of strings (assigned, `+=`, `.extend`,
        `.append`; `names` None for anything else). Set in a branch that may not run, the lists of both
        branches count."""
        if not (self._module_level and isinstance(target, ast.Name) and target.id == "__all__"):
            return
        if names is None:
            self.info.all_literal = False
            return
        kept = self.info.all_names if (extend or self.flow_depth) and self.info.all_names else set()
        self.info.all_names = kept | names

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._define(_target_names(target))
            self._dunder_all(target, literal_strings(node.value), extend=False)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._define(_target_names(node.target))
        if node.value is not None:
            self._dunder_all(node.target, literal_strings(node.value), extend=False)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._define(_target_names(node.target))
        self._dunder_all(
            node.target, literal_strings(node.value) if isinstance(node.op, ast.Add) else None, extend=True
        )
        self.generic_visit(node)

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

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self._define(_target_names(node.target))
        self.flow_depth += 1
        self.generic_visit(node)
        self.flow_depth -= 1

    visit_AsyncFor = visit_For

    def visit_While(self, node: ast.While) -> None:
        self.flow_depth += 1
        self.generic_visit(node)
        self.flow_depth -= 1

    visit_Match = visit_While  # type: ignore[assignment]

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            if item.optional_vars is not None:
                self._define(_target_names(item.optional_vars))
        self.generic_visit(node)

    visit_AsyncWith = visit_With

    def visit_Delete(self, node: ast.Delete) -> None:
        # Only a `del` that surely runs removes a name; one in a branch may not, and the name then stays.
        if self.scope_depth == 0 and self.flow_depth == 0:
            for target in node.targets:
                for name in _target_names(target):
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
        self.global_names.update(node.names)

    # -- guards
    def visit_Try(self, node: ast.Try) -> None:
        optional = _guards_imports(node.handlers)
        self.flow_depth += 1
        self.optional_depth += optional
        for stmt in node.body:
            self.visit(stmt)
        self.optional_depth -= optional
        for part in (*node.handlers, *node.orelse, *node.finalbody):
            self.visit(part)
        self.flow_depth -= 1

    visit_TryStar = visit_Try  # type: ignore[assignment]

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        taken = static_truth(node.test, self.target)
        if taken is not None:
            # Judged as the target runs it: the branch it never takes is not read (its imports never run,
            # its names are never bound), and the one it takes is read as unconditional code.
            live, dead = (node.body, node.orelse) if taken else (node.orelse, node.body)
            self._unreachable(dead, node.lineno)
            for stmt in live:
                self.visit(stmt)
            return
        body_found, else_found = found_by_test(node.test)
        type_checking = _is_type_checking(node.test)
        self.flow_depth += 1
        self.type_checking_depth += type_checking
        self._branch(node.body, body_found)
        self.type_checking_depth -= type_checking
        self._branch(node.orelse, else_found)
        self.flow_depth -= 1

    def _branch(self, body: Sequence[ast.stmt], found: frozenset[str]) -> None:
        self.found.append(found)
        for stmt in body:
            self.visit(stmt)
        self.found.pop()

    def _unreachable(self, body: Sequence[ast.stmt], line: int) -> None:
        """Note what a skipped branch would bind at module level, so a hint can say why a name is missing."""
        if not (self._module_level and body):
            return
        scratch = ModuleInfo(self.info.name, self.info.file, self.info.is_package)
        collector = _Collector(scratch, self.target)
        for stmt in body:
            collector.visit(stmt)
        for name in scratch.defined:
            self.info.unreachable.setdefault(name, line)

    # -- imports
    def _site(
        self, node: ast.stmt | ast.expr, module: str, names: tuple[str, ...], star: bool = False
    ) -> None:
        found = any(module == m or module.startswith(m + ".") for frame in self.found for m in frame)
        self.info.sites.append(
            ImportSite(
                file=self.info.file,
                line=node.lineno,
                module=module,
                names=names,
                lazy=self.function_depth > 0,
                optional=self.optional_depth > 0 or self.type_checking_depth > 0 or found,
                type_checking=self.type_checking_depth > 0,
                star=star,
            )
        )

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._define([alias.asname or alias.name.split(".")[0]])
            self._site(node, alias.name, ())

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = absolute_name(self.info, node.module, node.level)
        star = any(a.name == "*" for a in node.names)
        names = tuple(a.name for a in node.names if a.name != "*")
        self._define(a.asname or a.name for a in node.names if a.name != "*")
        if star and self._module_level and module:
            self.info.stars.append(module)
        self._site(node, module, names, star)


def absolute_name(info: ModuleInfo, module: str | None, level: int) -> str:
    if level == 0:
        return module or ""
    package = info.name if info.is_package else info.name.rpartition(".")[0]
    parts = package.split(".") if package else []
    if level > len(parts):
        # beyond the top (level 2 needs a package two deep, as importlib's _resolve_name): Python raises
        # ImportError; reported as unresolvable
        return ""
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
    target: Target | None = None,
) -> dict[str, ModuleInfo]:
    """Every .py file of the source, parsed as `target` runs it. A syntax error is left to verification (which
    names it).

    `contents`: the files' bytes where the caller has already read them; `target`: the bundle's Python
    (default: this interpreter's version, on Lambda)."""
    if target is None:
        target = Target(sys.version_info[:2])
    modules: dict[str, ModuleInfo] = {}
    for relative, path in files:
        if not relative.endswith(".py"):
            continue
        name, is_package = _module_name(relative)
        if not name or not all(part.isidentifier() for part in name.split(".")):
            continue  # not importable by name (e.g. migrations/versions/0001_x.py): loaded by path, if at all
        data = contents[relative] if contents is not None and relative in contents else path.read_bytes()
        modules[name] = _parse(name, relative, is_package, data, target)
    return modules


def _parse(name: str, relative: str, is_package: bool, data: bytes, target: Target) -> ModuleInfo:
    info = ModuleInfo(name=name, file=relative, is_package=is_package)
    try:
        tree = ast.parse(data, filename=relative)
    except (SyntaxError, ValueError):
        return info
    _Collector(info, target).collect(tree)
    return info
