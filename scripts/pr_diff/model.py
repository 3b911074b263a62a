"""What the PR diff summary reports, as data: built by summary.py, rendered by render.py."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Template = Mapping[str, Any]
ChangeKind = Literal["added", "modified", "may be replaced", "replaced", "removed"]
KINDS: tuple[ChangeKind, ...] = ("added", "modified", "may be replaced", "replaced", "removed")
# Resources CDK re-creates under a new logical ID whenever their content changes: churn by design.
CONTENT_HASHED_TYPES = frozenset({"AWS::Lambda::Version", "AWS::ApiGateway::Deployment"})


@dataclass(frozen=True)
class ResourceChange:
    logical_id: str
    type: str
    kind: ChangeKind
    path: str | None = None
    changed: tuple[str, ...] = ()  # property / attribute names that differ
    reasons: tuple[str, ...] = ()  # why a replacement happens
    impact: str = ""  # the library's verdict: WILL_UPDATE, MAY_REPLACE, WILL_REPLACE, WILL_DESTROY...
    blocked_by: str | None = None  # the stack-policy action denied, e.g. "Update:Replace"
    looks_like: str | None = None  # the logical ID this one looks renamed from/to


# Records only: `duplicates` pairs their field lists with other records' by shape; no logic repeats.
@dataclass(frozen=True)
class VersionChange:
    function_id: str
    label: str
    canary: bool
    detail: str  # deployment config, or why no canary runs
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Finding:
    logical_id: str
    type: str
    message: str
    severe: bool = False


@dataclass(frozen=True)
class AlarmChange:
    logical_id: str
    name: str
    kind: ChangeKind
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class StackDiff:
    stack: str
    changes: tuple[ResourceChange, ...]
    versions: tuple[VersionChange, ...] = ()
    code_without_version: tuple[VersionChange, ...] = ()
    iam: tuple[Finding, ...] = ()
    security_groups: tuple[Finding, ...] = ()
    alarms: tuple[AlarmChange, ...] = ()
    protected: tuple[str, ...] = ()
    policy_given: bool = False
    notes: tuple[str, ...] = ()

    def of_kind(self, kind: ChangeKind) -> tuple[ResourceChange, ...]:
        return tuple(c for c in self.changes if c.kind == kind)

    @property
    def blocked(self) -> tuple[ResourceChange, ...]:
        return tuple(c for c in self.changes if c.blocked_by)

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)
