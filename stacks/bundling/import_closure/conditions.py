"""What an `if` test is on the target interpreter: the Python version and platform checks the source makes
(judged as type checkers judge them, PEP 484), and the modules an `importlib.util.find_spec` guard proved."""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from dataclasses import dataclass

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


def literal_strings(node: ast.expr | None) -> set[str] | None:
    """The strings of a literal list, tuple or set of strings; None for anything else."""
    if not isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return None
    values = [elt.value for elt in node.elts if isinstance(elt, ast.Constant) and isinstance(elt.value, str)]
    return set(values) if len(values) == len(node.elts) else None


def literal_str(node: ast.expr | None) -> str | None:
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


def is_attr(node: ast.expr, module: str, attr: str) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == attr
        and isinstance(node.value, ast.Name)
        and node.value.id == module
    )


def literal_int(node: ast.expr | None) -> int | None:
    return node.value if isinstance(node, ast.Constant) and type(node.value) is int else None


def _version_value(node: ast.expr, target: Target) -> _Version | None:
    if is_attr(node, "sys", "version_info"):
        return target.version, True
    if isinstance(node, ast.Attribute) and is_attr(node.value, "sys", "version_info"):
        if node.attr in ("major", "minor"):
            return target.version[node.attr == "minor"]
        return None
    if isinstance(node, ast.Subscript) and is_attr(node.value, "sys", "version_info"):
        index = literal_int(node.slice)
        if index in (0, 1):
            return target.version[index]
        if isinstance(node.slice, ast.Slice) and node.slice.lower is None and node.slice.step is None:
            upper = literal_int(node.slice.upper)
            if upper is not None and upper > 0:
                return target.version[:upper], upper > len(target.version)
    return None


def _version_literal(node: ast.expr) -> tuple[int, ...] | int | None:
    if isinstance(node, ast.Tuple):
        values = [literal_int(elt) for elt in node.elts]
        return tuple(v for v in values if v is not None) if None not in values else None
    return literal_int(node)


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
    if is_attr(node, "sys", "platform"):
        return target.platform
    if is_attr(node, "os", "name"):
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
    if isinstance(op, (ast.Eq, ast.NotEq)) and literal_str(right) is not None:
        return (string == literal_str(right)) == isinstance(op, ast.Eq)
    choices = literal_strings(right)
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
