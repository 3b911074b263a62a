"""Reading one source file as the target runs it: every import with its file and line, and the names its
module level binds (import_closure.py's docstring says what counts). An `if` test is judged on the target:
its Python version and platform checks as type checkers judge them (PEP 484), and the modules an
`importlib.util.find_spec` guard proved."""

from __future__ import annotations

import ast
import math
import operator
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from stacks.bundling.spec import BundlingError


@dataclass(frozen=True)
class Target:
    """The interpreter that runs the bundle: the version and platform checks of the source are judged against
    it. The micro version is not known (a runtime moves through them), so a check that depends on it is left
    undecided: both branches count."""

    version: tuple[int, int]
    platform: str = "linux"  # `sys.platform` and `os.name` on every Lambda runtime
    os_name: str = "posix"

    @classmethod
    def for_python(cls, python_version: str) -> Target:
        """The Lambda target of `python_version` ("3.11", as BundleSpec.python_version gives it)."""
        major, minor = python_version.split(".")[:2]
        return cls((int(major), int(minor)))

    def __str__(self) -> str:
        return f"python{self.version[0]}.{self.version[1]} on {self.platform}"


def literal_str(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def literal_int(node: ast.expr | None) -> int | None:
    return node.value if isinstance(node, ast.Constant) and type(node.value) is int else None


def literal_strings(node: ast.expr | None) -> set[str] | None:
    """The strings of a literal list, tuple or set of strings; None for anything else."""
    if not isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return None
    values = [literal_str(elt) for elt in node.elts]
    return None if None in values else {v for v in values if v is not None}


def is_attr(node: ast.expr, module: str, attr: str) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == attr and getattr(node.value, "id", None) == module


# -- tests judged against the target. Only `sys.version_info`, `sys.platform` (and `os.name`) are read,
# spelled through `sys.` / `os.`, as type checkers judge them (PEP 484): a name imported under another
# spelling or a flag computed from them is a runtime condition, and both of its branches count.

_ORDER = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt}
_ORDER |= {ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge}

# The target's micro version and release level are not known: a `sys.version_info` read ends with _MORE, which
# sorts after every number, so the value sorts after any literal it starts with, as the real one does.
_MORE = math.inf


def _read(node: ast.expr, target: Target) -> tuple[float, ...] | int | str | None:
    """What `node` is on the target when it reads the version or the platform; None for anything else."""
    if is_attr(node, "sys", "platform"):
        return target.platform
    if is_attr(node, "os", "name"):
        return target.os_name
    if is_attr(node, "sys", "version_info"):
        return (*target.version, _MORE)
    if isinstance(node, ast.Attribute) and is_attr(node.value, "sys", "version_info"):
        return target.version[node.attr == "minor"] if node.attr in ("major", "minor") else None
    if not (isinstance(node, ast.Subscript) and is_attr(node.value, "sys", "version_info")):
        return None
    part = node.slice
    index = literal_int(part)
    if index in (0, 1):
        return target.version[index]
    if not isinstance(part, ast.Slice) or part.lower is not None or part.step is not None:
        return None  # only `[:upper]` is read
    upper = literal_int(part.upper)
    if upper is None or upper <= 0:
        return None
    return (*target.version[:upper], _MORE) if upper > len(target.version) else target.version[:upper]


def _literal(node: ast.expr) -> tuple[int, ...] | int | str | None:
    """An int, a str or a tuple of ints written in the source; None for anything else."""
    if isinstance(node, ast.Tuple):
        values = [literal_int(elt) for elt in node.elts]
        return tuple(v for v in values if v is not None) if None not in values else None
    return literal_int(node) if literal_str(node) is None else literal_str(node)


def _compare(node: ast.Compare, target: Target) -> bool | None:
    if len(node.ops) != 1:
        return None
    op, left, right = node.ops[0], node.left, node.comparators[0]
    value = _read(left, target)
    if isinstance(op, (ast.In, ast.NotIn)):
        choices = literal_strings(right)
        if not isinstance(value, str) or choices is None:
            return None
        return (value in choices) == isinstance(op, ast.In)
    if type(op) not in _ORDER:
        return None
    # The target's value on either side: `(3, 11) <= sys.version_info` too.
    known, literal = (value, _literal(right)) if value is not None else (_read(right, target), _literal(left))
    if known is None or literal is None or type(known) is not type(literal):
        return None  # like with like only: a version tuple, one of its numbers, a platform string
    if isinstance(known, str) and not isinstance(op, (ast.Eq, ast.NotEq)):
        return None
    if isinstance(known, tuple) and isinstance(literal, tuple) and known[-1] == _MORE:
        known_part = known[:-1]  # a literal equal to it that goes on reaches the unknown micro version
        if len(literal) > len(known_part) and literal[: len(known_part)] == known_part:
            return None
    return _ORDER[type(op)](known, literal) if value is not None else _ORDER[type(op)](literal, known)


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
        return _compare(test, target)
    if isinstance(test, ast.Call) and isinstance(test.func, ast.Attribute) and test.func.attr == "startswith":
        string = _read(test.func.value, target)
        if not isinstance(string, str) or len(test.args) != 1 or test.keywords:
            return None
        prefix = literal_str(test.args[0])
        prefixes = {prefix} if prefix is not None else literal_strings(test.args[0])
        return None if prefixes is None else string.startswith(tuple(prefixes))
    return None


# -- find_spec guards


def _probed_module(node: ast.expr) -> str | None:
    """m for `importlib.util.find_spec("m")`, `util.find_spec("m")` or `find_spec("m")` (absolute m only)."""
    if not isinstance(node, ast.Call) or not node.args:
        return None
    name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
    module = literal_str(node.args[0])
    return module if name == "find_spec" and module and not module.startswith(".") else None


def found_by_test(test: ast.expr) -> tuple[frozenset[str], frozenset[str]]:
    """(modules find_spec found when the body runs, modules it found when the `else` runs)."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        body, orelse = found_by_test(test.operand)
        return orelse, body
    if isinstance(test, ast.BoolOp):
        parts = [found_by_test(v) for v in test.values]
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
    # Not parsed by this Python: a syntax newer than it (`type X = ...` read by 3.11 for a 3.12 target) or
    # broken. Any name is accepted; verification imports the module with the target's own interpreter,
    # which names a real syntax error with its line.
    unread: bool = False
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
    """Every .py file of the source, parsed as `target` runs it. A file this Python cannot parse is left to
    verification (ModuleInfo.unread).

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
        modules[name] = _read_module(name, relative, is_package, data, target)
    return modules


# A valid module can nest deeper than the visitor's recursion allows at the default limit (a generated
# lookup table: one expression of a thousand terms). The limit is then raised for the whole process (never
# lowered again, so two threads reading at once cannot undo each other; Python-to-Python calls take no C
# stack since 3.11) and the file read again. One deeper still is named instead of crashing synth.
DEEP_RECURSION_LIMIT = 100_000


def _read_module(name: str, relative: str, is_package: bool, data: bytes, target: Target) -> ModuleInfo:
    for attempt in range(2):
        info = ModuleInfo(name, relative, is_package)  # a failed attempt's partial reading is dropped
        try:
            tree = ast.parse(data, filename=info.file)
        except (SyntaxError, ValueError):
            info.unread = True
            return info
        except RecursionError:
            pass
        else:
            collector = _Collector(info, target)
            try:
                collector.visit(tree)
            except RecursionError:
                pass
            else:
                info.defined |= collector.global_names
                return info
        if attempt or sys.getrecursionlimit() >= DEEP_RECURSION_LIMIT:
            break
        sys.setrecursionlimit(DEEP_RECURSION_LIMIT)
    raise BundlingError(f"{relative}: nested too deeply for the static import check; split the expression")
