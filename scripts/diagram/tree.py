"""cdk.out/tree.json read: the stacks it holds, a stack's CloudFormation resources named by construct path
(never by hashed logical ID), and the references between them (`Ref`, `Fn::GetAtt`, `Fn::Sub`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scripts.diagram.model import CFN_ID, CFN_PROPS, CFN_TYPE, STACK_FQNS, DiagramError


@dataclass(frozen=True, eq=False)
class Resource:
    """One CloudFormation resource of the stack, named by its construct path (never its hashed logical ID)."""

    logical_id: str
    type: str
    path: str  # inside the stack; an L1 that is its L2's default child ("Resource") takes the L2's path
    props: Mapping[str, Any]
    refs: frozenset[str]

    @property
    def leaf(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def parent(self) -> str:
        return self.path.rsplit("/", 1)[0] if "/" in self.path else ""

    def under(self, prefix: str) -> bool:
        return self.path == prefix or self.path.startswith(prefix + "/")


def _children(node: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    children = node.get("children")
    if not isinstance(children, dict):
        return []
    return sorted((k, v) for k, v in children.items() if isinstance(v, dict))


def _fqn(node: Mapping[str, Any]) -> str:
    info = node.get("constructInfo")
    return str(info.get("fqn", "")) if isinstance(info, dict) else ""


def find_stacks(tree: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Every stack in the tree by construct path (a top-level stack's path is its name)."""
    root = tree.get("tree") if isinstance(tree, dict) else None
    if not isinstance(root, dict):
        raise DiagramError("no 'tree' node: not a CDK tree.json")
    found: dict[str, Mapping[str, Any]] = {}

    def visit(node: Mapping[str, Any], path: str) -> None:
        for child_id, child in _children(node):
            child_path = f"{path}/{child_id}" if path else child_id
            if _fqn(child) in STACK_FQNS:
                found[child_path] = child
            visit(child, child_path)

    visit(root, "")
    return found


_SUB_REF = re.compile(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z0-9.]+)?\}")


def _refs(value: Any) -> Iterator[str]:
    """Logical IDs a property value refers to (pseudo parameters such as AWS::Region are not resources)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                yield inner
            elif key == "Fn::GetAtt" and isinstance(inner, list) and inner and isinstance(inner[0], str):
                yield inner[0]
            elif key == "Fn::GetAtt" and isinstance(inner, str):
                yield inner.split(".", 1)[0]
            elif key == "Fn::Sub":
                template = inner[0] if isinstance(inner, list) and inner else inner
                if isinstance(template, str):
                    yield from _SUB_REF.findall(template)
            yield from _refs(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _refs(inner)


def index_resources(stack: Mapping[str, Any]) -> list[Resource]:
    """The stack's resources in construct-path order; nested stacks are left to their own picture."""
    found: list[Resource] = []

    def visit(node: Mapping[str, Any], path: list[str]) -> None:
        attrs = node.get("attributes")
        if isinstance(attrs, dict) and isinstance(attrs.get(CFN_TYPE), str) and path:
            shown = path[:-1] if path[-1] == "Resource" and len(path) > 1 else path
            props = attrs.get(CFN_PROPS)
            props = props if isinstance(props, dict) else {}
            refs = frozenset(r for r in _refs(props) if not r.startswith("AWS::"))
            found.append(
                Resource(
                    str(attrs.get(CFN_ID, "/".join(path))), attrs[CFN_TYPE], "/".join(shown), props, refs
                )
            )
        for child_id, child in _children(node):
            if _fqn(child) not in STACK_FQNS:
                visit(child, [*path, child_id])

    visit(stack, [])
    return sorted(found, key=lambda r: (r.path, r.logical_id))


class Index:
    """Look-ups over one stack's resources."""

    def __init__(self, resources: Sequence[Resource]) -> None:
        self.resources = list(resources)
        self.by_id = {r.logical_id: r for r in resources}

    def of_type(self, *types: str) -> list[Resource]:
        return [r for r in self.resources if r.type in types]

    def refs_of_type(self, resource: Resource, *types: str) -> list[Resource]:
        hits = (self.by_id.get(ref) for ref in resource.refs)
        return sorted((r for r in hits if r is not None and r.type in types), key=lambda r: r.path)

    def under(self, prefix: str) -> list[Resource]:
        return [r for r in self.resources if r.under(prefix)]

    def ids_under(self, prefix: str) -> set[str]:
        return {r.logical_id for r in self.under(prefix)}


def _common_path(a: str, b: str) -> str:
    shared: list[str] = []
    for x, y in zip(a.split("/"), b.split("/"), strict=False):
        if x != y:
            break
        shared.append(x)
    return "/".join(shared)
