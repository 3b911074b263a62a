"""What an `if` test is on the target interpreter: the Python version and platform checks the source makes
(judged as type checkers judge them, PEP 484), and the modules an `importlib.util.find_spec` guard proved."""

from __future__ import annotations

import ast
import math
import operator
from dataclasses import dataclass


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
    index, part = literal_int(node.slice), node.slice
    if index in (0, 1):
        return target.version[index]
    upper = literal_int(part.upper) if isinstance(part, ast.Slice) and not (part.lower or part.step) else None
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
