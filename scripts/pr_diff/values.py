"""CloudFormation values read as a reviewer does: a template's resources and properties, intrinsics
rendered as text, the logical IDs a value references, and what a stack policy denies.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping
from typing import Any

from scripts.pr_diff.model import (
    Template,
)


def render(value: Any) -> str:
    """A short, stable, human-readable form of a template value (intrinsics as ${LogicalId.Attr})."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float) or value is None:
        return json.dumps(value)
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref" and isinstance(arg, str):
            return f"${{{arg}}}"
        if key == "Fn::GetAtt":
            parts = arg if isinstance(arg, list) else str(arg).split(".", 1)
            return f"${{{'.'.join(render(p) for p in parts)}}}"
        if key == "Fn::Join" and isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], list):
            return render(arg[0]).join(render(p) for p in arg[1])
        if key == "Fn::Sub":
            return render(arg[0]) if isinstance(arg, list) else render(arg)
    if isinstance(value, list):
        return "[" + ", ".join(render(v) for v in value) + "]"
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


_SUB_REF = re.compile(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z0-9.]+)?\}")


def references(value: Any) -> set[str]:
    """Logical IDs (not pseudo parameters) a value refers to through Ref, Fn::GetAtt or Fn::Sub."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, arg in value.items():
            if key == "Ref" and isinstance(arg, str):
                found.add(arg)
            elif key == "Fn::GetAtt":
                first = arg[0] if isinstance(arg, list) and arg else str(arg).split(".", 1)[0]
                if isinstance(first, str):
                    found.add(first)
            elif key == "Fn::Sub":
                text = arg[0] if isinstance(arg, list) else arg
                if isinstance(text, str):
                    found.update(_SUB_REF.findall(text))
                found |= references(arg[1] if isinstance(arg, list) and len(arg) > 1 else None)
            else:
                found |= references(arg)
    elif isinstance(value, list):
        for item in value:
            found |= references(item)
    return {f for f in found if not f.startswith("AWS::")}


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _statement_matches(
    statement: Mapping[str, Any], action: str, logical_id: str, resource_type: str
) -> bool:
    if "Action" in statement:
        if not any(fnmatch.fnmatchcase(action, a) for a in _as_list(statement["Action"])):
            return False
    elif any(fnmatch.fnmatchcase(action, a) for a in _as_list(statement.get("NotAction"))):
        return False
    target = f"LogicalResourceId/{logical_id}"

    def hit(patterns: Any) -> bool:
        return any(p == "*" or fnmatch.fnmatchcase(target, p) for p in _as_list(patterns))

    if "Resource" in statement and not hit(statement["Resource"]):
        return False
    if "NotResource" in statement and hit(statement["NotResource"]):
        return False
    for operator, tests in (statement.get("Condition") or {}).items():
        wanted = _as_list((tests or {}).get("ResourceType"))
        if operator == "StringEquals" and resource_type not in wanted:
            return False
        if operator == "StringLike" and not any(fnmatch.fnmatchcase(resource_type, w) for w in wanted):
            return False
    return True


def policy_denies(policy: Mapping[str, Any] | None, action: str, logical_id: str, resource_type: str) -> bool:
    """Whether a stack policy refuses `action` (Update:Modify/Replace/Delete) on a resource.

    CloudFormation's rule: an explicit Deny wins; otherwise the action must be explicitly allowed.
    """
    if policy is None:
        return False
    statements = _as_list(policy.get("Statement"))
    matching = [s for s in statements if _statement_matches(s, action, logical_id, resource_type)]
    if any(s.get("Effect") == "Deny" for s in matching):
        return True
    return not any(s.get("Effect") == "Allow" for s in matching)


def protected_ids(policy: Mapping[str, Any] | None) -> tuple[str, ...]:
    """Logical IDs a Deny statement names explicitly (for the report)."""
    ids = set()
    for statement in _as_list((policy or {}).get("Statement")):
        if statement.get("Effect") == "Deny":
            for resource in _as_list(statement.get("Resource")):
                if isinstance(resource, str) and resource.startswith("LogicalResourceId/"):
                    ids.add(resource.removeprefix("LogicalResourceId/"))
    return tuple(sorted(ids))


def _resources(template: Template) -> dict[str, dict[str, Any]]:
    return dict(template.get("Resources") or {})


def _props(resource: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict((resource or {}).get("Properties") or {})


def _path(resource: Mapping[str, Any] | None) -> str | None:
    raw = ((resource or {}).get("Metadata") or {}).get("aws:cdk:path")
    if not isinstance(raw, str):
        return None
    # The first part is always the stack's construct ID; the last is CDK's name for the L1 resource.
    parts = raw.split("/")[1:]
    if parts and parts[-1] in ("Resource", "Default"):
        parts = parts[:-1]
    return "/".join(parts) or None


def _changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
