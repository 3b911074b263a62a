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

import ast
import json
import operator
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
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

# Exception names whose handler makes an import optional (the code copes with its absence), unless the handler
# raises (see _guards_imports).
_OPTIONAL_HANDLERS = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})

# `sys.platform` and `os.name` on every Lambda runtime.
LAMBDA_PLATFORM = "linux"
LAMBDA_OS_NAME = "posix"


@dataclass(frozen=True)
class Target:
    """The interpreter that runs the bundle: the version and platform checks of the source are judged against
    it. The micro version is not known (a runtime moves through them), so a check that depends on it is left
    undecided: both branches count."""

    version: tuple[int, int]
    platform: str = LAMBDA_PLATFORM
    os_name: str = LAMBDA_OS_NAME

    @classmethod
    def for_python(cls, python_version: str) -> Target:
        """The Lambda target of `python_version` ("3.11", as BundleSpec.python_version gives it)."""
        major, minor = python_version.split(".")[:2]
        return cls((int(major), int(minor)))

    def __str__(self) -> str:
        return f"python{self.version[0]}.{self.version[1]} on {self.platform}"


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


def _strings(node: ast.expr | None) -> set[str] | None:
    """The strings of a literal list, tuple or set of strings; None for anything else."""
    if not isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return None
    values = [elt.value for elt in node.elts if isinstance(elt, ast.Constant) and isinstance(elt.value, str)]
    return set(values) if len(values) == len(node.elts) else None


def _literal_str(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


# -- tests judged against the target. Only `sys.version_info`, `sys.platform` (and `os.name`) are read,
# spelled through `sys.` / `os.`, as type checkers judge them (PEP 484): a name imported under another
# spelling or a flag computed from them is a runtime condition, and both of its branches count.

_COMPARE: dict[type[ast.cmpop], Callable[[int, int], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_MIRRORED: dict[type[ast.cmpop], ast.cmpop] = {
    ast.Eq: ast.Eq(),
    ast.NotEq: ast.NotEq(),
    ast.Lt: ast.Gt(),
    ast.LtE: ast.GtE(),
    ast.Gt: ast.Lt(),
    ast.GtE: ast.LtE(),
}

# What a `sys.version_info` expression is on the target: (its known leading components, whether the real
# value has more: the micro version and release level, unknown here), or one component.
_Version = tuple[tuple[int, ...], bool] | int


def _is_attr(node: ast.expr, module: str, attr: str) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == attr
        and isinstance(node.value, ast.Name)
        and node.value.id == module
    )


def _int(node: ast.expr | None) -> int | None:
    return node.value if isinstance(node, ast.Constant) and type(node.value) is int else None


def _version_value(node: ast.expr, target: Target) -> _Version | None:
    if _is_attr(node, "sys", "version_info"):
        return target.version, True
    if isinstance(node, ast.Attribute) and _is_attr(node.value, "sys", "version_info"):
        if node.attr in ("major", "minor"):
            return target.version[node.attr == "minor"]
        return None
    if isinstance(node, ast.Subscript) and _is_attr(node.value, "sys", "version_info"):
        index = _int(node.slice)
        if index in (0, 1):
            return target.version[index]
        if isinstance(node.slice, ast.Slice) and node.slice.lower is None and node.slice.step is None:
            upper = _int(node.slice.upper)
            if upper is not None and upper > 0:
                return target.version[:upper], upper > len(target.version)
    return None


def _version_literal(node: ast.expr) -> tuple[int, ...] | int | None:
    if isinstance(node, ast.Tuple):
        values = [_int(elt) for elt in node.elts]
        return tuple(v for v in values if v is not None) if None not in values else None
    return _int(node)


def _compare_version(value: _Version, op: ast.cmpop, literal: tuple[int, ...] | int) -> bool | None:
    compare = _COMPARE[type(op)]
    if isinstance(value, int) or isinstance(literal, int):
        return compare(value, literal) if isinstance(value, int) and isinstance(literal, int) else None
    known, longer = value
    for mine, theirs in zip(known, literal, strict=False):
        if mine != theirs:
            return compare(mine, theirs)
    # Equal as far as both go: tuples then order by length, unless the literal reaches the unknown micro.
    if len(literal) > len(known):
        return None if longer else compare(0, 1)
    return compare(1 if longer or len(known) > len(literal) else 0, 0)


def _string_value(node: ast.expr, target: Target) -> str | None:
    if _is_attr(node, "sys", "platform"):
        return target.platform
    if _is_attr(node, "os", "name"):
        return target.os_name
    return None


def _static_compare(node: ast.Compare, target: Target) -> bool | None:
    if len(node.ops) != 1:
        return None
    left, op, right = node.left, node.ops[0], node.comparators[0]
    if type(op) in _MIRRORED and _version_value(left, target) is None and _string_value(left, target) is None:
        left, op, right = right, _MIRRORED[type(op)], left  # `(3, 11) <= sys.version_info`
    version = _version_value(left, target)
    literal = _version_literal(right)
    if version is not None and literal is not None and type(op) in _COMPARE:
        return _compare_version(version, op, literal)
    string = _string_value(left, target)
    if string is None:
        return None
    if isinstance(op, (ast.Eq, ast.NotEq)) and _literal_str(right) is not None:
        return (string == _literal_str(right)) == isinstance(op, ast.Eq)
    choices = _strings(right)
    if isinstance(op, (ast.In, ast.NotIn)) and choices is not None:
        return (string in choices) == isinstance(op, ast.In)
    return None


def static_truth(test: ast.expr, target: Target) -> bool | None:
    """The value of an `if` test on `target` when it reads only the Python version and the platform; None
    when it depends on anything else (then both branches may run)."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        value = static_truth(test.operand, target)
        return None if value is None else not value
    if isinstance(test, ast.BoolOp):
        values = [static_truth(v, target) for v in test.values]
        decisive = isinstance(test.op, ast.Or)  # True decides an `or`, False an `and`
        if decisive in values:
            return decisive
        return None if None in values else not decisive
    if isinstance(test, ast.Compare):
        return _static_compare(test, target)
    if isinstance(test, ast.Call) and isinstance(test.func, ast.Attribute) and test.func.attr == "startswith":
        string = _string_value(test.func.value, target)
        if string is None or len(test.args) != 1 or test.keywords:
            return None
        prefix = _literal_str(test.args[0])
        prefixes = {prefix} if prefix is not None else _strings(test.args[0])
        return None if prefixes is None else string.startswith(tuple(prefixes))
    return None


# -- find_spec guards


def _probed_module(node: ast.expr) -> str | None:
    """m for `importlib.util.find_spec("m")`, `util.find_spec("m")` or `find_spec("m")` (absolute m only)."""
    if not isinstance(node, ast.Call) or not node.args:
        return None
    name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
    module = _literal_str(node.args[0])
    return module if name == "find_spec" and module and not module.startswith(".") else None


def _found_by_test(test: ast.expr) -> tuple[frozenset[str], frozenset[str]]:
    """(modules find_spec found when the body runs, modules it found when the `else` runs)."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        body, orelse = _found_by_test(test.operand)
        return orelse, body
    if isinstance(test, ast.BoolOp):
        parts = [_found_by_test(v) for v in test.values]
        if isinstance(test.op, ast.And):  # the body runs when every operand held
            return frozenset().union(*(body for body, _ in parts)), frozenset()
        return frozenset(), frozenset().union(*(orelse for _, orelse in parts))
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        right = test.comparators[0]
        module = _probed_module(test.left)
        if module and isinstance(right, ast.Constant) and right.value is None:
            found = frozenset({module})
            if isinstance(test.ops[0], (ast.IsNot, ast.NotEq)):
                return found, frozenset()
            if isinstance(test.ops[0], (ast.Is, ast.Eq)):
                return frozenset(), found
        return frozenset(), frozenset()
    module = _probed_module(test)
    return (frozenset({module}), frozenset()) if module else (frozenset(), frozenset())


# -- literal dynamic imports


def _dynamic_import(node: ast.Call, info: ModuleInfo) -> str | None:
    """The absolute module a literal `importlib.import_module(...)` or `__import__(...)` call imports, None
    for any other call (a computed name cannot be read statically: left to verification and the probe).
    "" when a relative name goes beyond the top-level package (an ImportError, as for `from .. import`)."""
    func = node.func
    name = _literal_str(node.args[0]) if node.args else None
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
        level = 0 if level_node is None else _int(level_node)
        return None if level is None else _absolute(info, name, level)
    is_import_module = (isinstance(func, ast.Name) and func.id == "import_module") or _is_attr(
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
    elif _literal_str(package):
        anchor = ModuleInfo(str(_literal_str(package)), info.file, is_package=True)
    else:
        return None
    return _absolute(anchor, name[level:] or None, level)


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
            self._dunder_all(target, _strings(node.value), extend=False)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._define(_target_names(node.target))
        if node.value is not None:
            self._dunder_all(node.target, _strings(node.value), extend=False)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._define(_target_names(node.target))
        self._dunder_all(
            node.target, _strings(node.value) if isinstance(node.op, ast.Add) else None, extend=True
        )
        self.generic_visit(node)

    def visit_Expr(self, node: ast.Expr) -> None:
        call = node.value
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute):
            # __all__.extend([...]) / __all__.append("x"); any other method leaves __all__ unread.
            method, arg = call.func.attr, call.args[0] if len(call.args) == 1 else None
            appended = _literal_str(arg) if method == "append" else None
            names = {appended} if appended is not None else _strings(arg) if method == "extend" else None
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
        body_found, else_found = _found_by_test(node.test)
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
        module = _absolute(self.info, node.module, node.level)
        star = any(a.name == "*" for a in node.names)
        names = tuple(a.name for a in node.names if a.name != "*")
        self._define(a.asname or a.name for a in node.names if a.name != "*")
        if star and self._module_level and module:
            self.info.stars.append(module)
        self._site(node, module, names, star)


def _absolute(info: ModuleInfo, module: str | None, level: int) -> str:
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
            if star not in seen and self.star_binds(star, name) and self.exports(star, name, seen):
                return True
        return False

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


def _missing_name_hint(resolver: _Resolver, module: str, name: str, target: Target) -> str:
    """What to fix when `from module import name` fails: why the name is not there, where it would be."""
    info = resolver.modules.get(module)
    file = info.file if info else module.replace(".", "/")
    fix = "or update the importers"
    if info is not None and name in info.deleted:
        return f"{file}:{info.deleted[name]} deletes {name} (`del`): keep it there {fix}"
    if info is not None and name in info.type_checking_names:
        return (
            f"module {module} ({file}) binds {name} only under `if TYPE_CHECKING:`, which never runs: "
            f"bind it outside that block {fix}"
        )
    if info is not None and name in info.unreachable:
        return (
            f"{file}:{info.unreachable[name]} binds {name} only in a branch {target} never takes: bind it "
            f"in the branch that runs there {fix}"
        )
    star = resolver.hidden_by_star(module, name, set())
    if star is not None:
        star_info = resolver.modules[star]
        why = (
            f"{name} is not in its `__all__`"
            if star_info.all_names is not None
            else "a name starting with '_' is not star-imported"
        )
        return (
            f"{star_info.file} defines {name}, but `from {star} import *` does not bind it ({why}): "
            f"add it to {star}.__all__, or import it from {star}"
        )
    return f"module {module} ({file}) no longer defines {name}: restore it there {fix}"


def _check(
    resolver: _Resolver, site: ImportSite, requirements: Path | None, source_dir: Path, target: Target
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
            return (
                f"cannot import name '{name}' from '{site.module}'",
                _missing_name_hint(resolver, site.module, name, target),
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
            problem = _check(resolver, site, requirements, source_dir, target)
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
    modules = read_source(source_dir, files)
    resolver = _Resolver(
        modules, _source_dirs(files), stdlib_names(f"{sys.version_info.major}.{sys.version_info.minor}"), None
    )
    return _reach(resolver, handlers)
