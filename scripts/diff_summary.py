#!/usr/bin/env python3
"""A risk-annotated Markdown summary of what deploying one CloudFormation template over another will do.

    python scripts/diff_summary.py --old OLD.template.json --new NEW.template.json \
        [--policy STACK.stack-policy.json] [--stack NAME] [--old-assets CDK_OUT] [--new-assets CDK_OUT]

`cdk diff` lists every property change; a reviewer needs the few that matter: what is replaced or removed
(and whether the stack policy will refuse it, failing the deploy), which functions get a new version and so a
CodeDeploy canary (and why: source, requirements or configuration), IAM and security-group broadening, and
alarm changes. Everything here is a pure function of the two templates, the stack policy in force and the
bundle metadata (build_info.json of each asset), so it is tested on fixture template pairs without AWS.

Replacement is decided from a table of the properties whose update CloudFormation documents as "Replacement"
for the resource types this app uses (REPLACEMENT_PROPERTIES), plus a cascade: a property of that kind which
refers (Ref/GetAtt/Sub) to a replaced resource is replaced too, because its value changes. A logical ID that
disappears is a removal, a new one an addition, even when it looks like a rename: CloudFormation creates the
new resource and deletes the old one.
"""

from __future__ import annotations

import argparse
import fnmatch
import ipaddress
import json
import re
import sys
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Template = Mapping[str, Any]
ChangeKind = Literal["added", "modified", "replaced", "removed"]
BLOCKED = "WILL BE BLOCKED by the stack policy"

# Properties whose change CloudFormation documents as "Update requires: Replacement", for the types of this
# app. "*" means every property (the resource is immutable). Types not listed are treated as updatable in
# place, which is what `cdk diff` also assumes without a change set.
REPLACEMENT_PROPERTIES: dict[str, frozenset[str]] = {
    "AWS::Lambda::Function": frozenset({"FunctionName", "PackageType"}),
    "AWS::Lambda::Alias": frozenset({"FunctionName", "Name"}),
    "AWS::Lambda::Version": frozenset({"*"}),
    "AWS::Lambda::Permission": frozenset({"*"}),
    "AWS::Lambda::EventSourceMapping": frozenset(
        {
            "EventSourceArn",
            "StartingPosition",
            "StartingPositionTimestamp",
            "SelfManagedEventSource",
            "Topics",
            "Queues",
        }
    ),
    "AWS::Lambda::EventInvokeConfig": frozenset({"FunctionName", "Qualifier"}),
    "AWS::SQS::Queue": frozenset({"QueueName", "FifoQueue"}),
    "AWS::SNS::Topic": frozenset({"TopicName", "FifoTopic"}),
    "AWS::SNS::Subscription": frozenset({"Endpoint", "Protocol", "TopicArn"}),
    "AWS::KMS::Key": frozenset({"KeySpec", "KeyUsage", "MultiRegion"}),
    "AWS::KMS::Alias": frozenset({"AliasName"}),
    "AWS::Logs::LogGroup": frozenset({"LogGroupName"}),
    "AWS::Logs::MetricFilter": frozenset({"FilterName", "LogGroupName"}),
    "AWS::Logs::SubscriptionFilter": frozenset({"FilterName", "LogGroupName"}),
    "AWS::CodeDeploy::Application": frozenset({"ApplicationName", "ComputePlatform"}),
    "AWS::CodeDeploy::DeploymentGroup": frozenset({"ApplicationName", "DeploymentGroupName"}),
    "AWS::CodeDeploy::DeploymentConfig": frozenset({"*"}),
    # The REST API itself has no replacement property (its Body/Name update in place); its children do.
    "AWS::ApiGateway::Stage": frozenset({"RestApiId", "StageName"}),
    "AWS::ApiGateway::Deployment": frozenset({"RestApiId", "DeploymentCanarySettings"}),
    "AWS::ApiGateway::Resource": frozenset({"ParentId", "PathPart", "RestApiId"}),
    "AWS::ApiGateway::Method": frozenset({"RestApiId"}),
    # RestApiId and Stage update in place (UpdateBasePathMapping): the custom-domain switch relies on it.
    "AWS::ApiGateway::BasePathMapping": frozenset({"DomainName", "BasePath"}),
    "AWS::Route53::RecordSet": frozenset({"Name", "HostedZoneId", "HostedZoneName"}),
    "AWS::ApiGateway::DomainName": frozenset({"DomainName"}),
    "AWS::IAM::Role": frozenset({"RoleName", "Path"}),
    "AWS::IAM::ManagedPolicy": frozenset({"ManagedPolicyName", "Path", "Description"}),
    "AWS::Events::Rule": frozenset({"Name", "EventBusName"}),
    "AWS::CloudWatch::Alarm": frozenset({"AlarmName"}),
    "AWS::CloudWatch::CompositeAlarm": frozenset({"AlarmName"}),
    "AWS::CloudWatch::Dashboard": frozenset({"DashboardName"}),
    "AWS::EC2::SecurityGroup": frozenset({"GroupDescription", "GroupName", "VpcId"}),
    "AWS::EC2::SecurityGroupIngress": frozenset({"*"}),
    "AWS::EC2::SecurityGroupEgress": frozenset({"*"}),
    "AWS::Chatbot::SlackChannelConfiguration": frozenset({"ConfigurationName"}),
    "AWS::SecretsManager::Secret": frozenset({"Name"}),
}

# Resources CDK re-creates under a new logical ID whenever their content changes: churn by design.
CONTENT_HASHED_TYPES = frozenset({"AWS::Lambda::Version", "AWS::ApiGateway::Deployment"})
# Resource attributes that change what CloudFormation does (Metadata and DependsOn do not).
RESOURCE_ATTRIBUTES = ("Properties", "DeletionPolicy", "UpdateReplacePolicy", "UpdatePolicy", "Condition")
ALARM_TYPES = frozenset({"AWS::CloudWatch::Alarm", "AWS::CloudWatch::CompositeAlarm"})
ALARM_FIELDS = (
    "Threshold",
    "ComparisonOperator",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "Period",
    "Statistic",
    "ExtendedStatistic",
    "MetricName",
    "Namespace",
    "Dimensions",
    "Metrics",
    "ThresholdMetricId",
    "TreatMissingData",
    "EvaluateLowSampleCountPercentile",
    "AlarmRule",
    "ActionsEnabled",
    "AlarmActions",
    "OKActions",
    "InsufficientDataActions",
    "AlarmDescription",
)
ALARM_ACTION_FIELDS = frozenset({"AlarmActions", "OKActions", "InsufficientDataActions"})
INTERNET = frozenset({"0.0.0.0/0", "::/0"})
BROAD_MANAGED_POLICIES = re.compile(r"(AdministratorAccess|PowerUserAccess|IAMFullAccess|FullAccess)$")


class DiffInputError(ValueError):
    """An input file that is missing or is not what it should be; the message names the file."""


# ---------------------------------------------------------------------------------------------------------
# CloudFormation values: rendering intrinsics and finding references


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


def _md(text: str, limit: int = 120) -> str:
    """Inline code for Markdown, shortened; backticks cannot appear inside."""
    text = text.replace("`", "'").replace("\n", " ")
    return f"`{text if len(text) <= limit else text[: limit - 1] + '…'}`"


# ---------------------------------------------------------------------------------------------------------
# Stack policy


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


# ---------------------------------------------------------------------------------------------------------
# Result types


@dataclass(frozen=True)
class ResourceChange:
    logical_id: str
    type: str
    kind: ChangeKind
    path: str | None = None
    changed: tuple[str, ...] = ()  # property / attribute names that differ
    reasons: tuple[str, ...] = ()  # why a replacement happens
    blocked_by: str | None = None  # the stack-policy action denied, e.g. "Update:Replace"
    looks_like: str | None = None  # the logical ID this one looks renamed from/to


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


# ---------------------------------------------------------------------------------------------------------
# Resource-level diff


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


def _replacement_reasons(
    rtype: str,
    old_p: Mapping[str, Any],
    new_p: Mapping[str, Any],
    changed_props: Sequence[str],
    replaced: set[str],
) -> list[str]:
    table = REPLACEMENT_PROPERTIES.get(rtype, frozenset())
    every = "*" in table
    reasons = [f"{p} changed" for p in changed_props if every or p in table]
    for prop in sorted(set(new_p) if every else table & set(new_p)):
        hit = sorted(references(new_p.get(prop)) & replaced)
        if hit and old_p.get(prop) == new_p.get(prop):
            reasons.append(f"{prop} refers to replaced {', '.join(hit)}")
    return reasons


def resource_changes(old: Template, new: Template, policy: Mapping[str, Any] | None) -> list[ResourceChange]:
    old_r, new_r = _resources(old), _resources(new)
    changed_attrs: dict[str, list[str]] = {}
    for lid in sorted(set(old_r) & set(new_r)):
        o, n = old_r[lid], new_r[lid]
        keys = [] if o.get("Type") == n.get("Type") else ["Type"]
        keys += _changed_keys(_props(o), _props(n))
        keys += [a for a in RESOURCE_ATTRIBUTES[1:] if o.get(a) != n.get(a)]
        if keys:
            changed_attrs[lid] = keys

    # Replacement, to a fixed point: a replaced resource changes the value of every Ref/GetAtt to it.
    replaced: dict[str, list[str]] = {}
    while True:
        grew = False
        for lid, keys in changed_attrs.items():
            o, n = old_r[lid], new_r[lid]
            if "Type" in keys:
                reasons = ["resource type changed"]
            else:
                changed_props = _changed_keys(_props(o), _props(n))
                reasons = _replacement_reasons(n["Type"], _props(o), _props(n), changed_props, set(replaced))
            if reasons and replaced.get(lid) != reasons:
                replaced[lid] = reasons
                grew = True
        # A resource whose properties are unchanged can still be replaced through the cascade.
        for lid in sorted((set(old_r) & set(new_r)) - set(changed_attrs)):
            n = new_r[lid]
            reasons = _replacement_reasons(n["Type"], _props(old_r[lid]), _props(n), [], set(replaced))
            if reasons and lid not in replaced:
                replaced[lid] = reasons
                changed_attrs[lid] = []
                grew = True
        if not grew:
            break

    out: list[ResourceChange] = []
    removed, added = sorted(set(old_r) - set(new_r)), sorted(set(new_r) - set(old_r))
    twins = _rename_pairs(old_r, new_r, removed, added)
    for lid in removed:
        rtype = old_r[lid]["Type"]
        denied = policy_denies(policy, "Update:Delete", lid, rtype)
        out.append(
            ResourceChange(
                lid,
                rtype,
                "removed",
                _path(old_r[lid]),
                blocked_by="Update:Delete" if denied else None,
                looks_like=twins.get(lid),
            )
        )
    for lid in added:
        out.append(
            ResourceChange(lid, new_r[lid]["Type"], "added", _path(new_r[lid]), looks_like=twins.get(lid))
        )
    for lid, keys in sorted(changed_attrs.items()):
        rtype = new_r[lid]["Type"]
        kind: ChangeKind = "replaced" if lid in replaced else "modified"
        action = "Update:Replace" if kind == "replaced" else "Update:Modify"
        denied = policy_denies(policy, action, lid, old_r[lid]["Type"])
        out.append(
            ResourceChange(
                lid,
                rtype,
                kind,
                _path(new_r[lid]),
                changed=tuple(keys),
                reasons=tuple(replaced.get(lid, ())),
                blocked_by=action if denied else None,
            )
        )
    return out


def _rename_pairs(
    old_r: Mapping[str, Any], new_r: Mapping[str, Any], removed: Sequence[str], added: Sequence[str]
) -> dict[str, str]:
    """Removed/added pairs of one type with the same properties or CDK path: most likely a renamed or
    moved construct. Still a delete + create for CloudFormation; the hint helps the reviewer see it."""
    pairs: dict[str, str] = {}
    for old_id in removed:
        o = old_r[old_id]
        if o["Type"] in CONTENT_HASHED_TYPES:
            continue
        for new_id in added:
            n = new_r[new_id]
            if new_id in pairs or n["Type"] != o["Type"]:
                continue
            same_path = _path(o) is not None and _path(o) == _path(n)
            if same_path or _props(o) == _props(n):
                pairs[old_id], pairs[new_id] = new_id, old_id
                break
    return pairs


# ---------------------------------------------------------------------------------------------------------
# Function versions (what starts a CodeDeploy canary)

FUNCTION_CONFIG_SCALARS = ("MemorySize", "Timeout", "Runtime", "Handler", "EphemeralStorage", "PackageType")


def _asset_key(function_props: Mapping[str, Any]) -> str | None:
    key = (function_props.get("Code") or {}).get("S3Key")
    return key.removesuffix(".zip") if isinstance(key, str) else None


def _code_reasons(
    old_p: Mapping[str, Any], new_p: Mapping[str, Any], assets: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    if old_p.get("Code") == new_p.get("Code"):
        return []
    old_key, new_key = _asset_key(old_p), _asset_key(new_p)
    old_info, new_info = assets.get(old_key or ""), assets.get(new_key or "")
    arrow = f"asset {(old_key or '?')[:8]} → {(new_key or '?')[:8]}"
    if old_info is None or new_info is None:
        return [f"source/requirements ({arrow})"]
    reasons = [
        label
        for label, key in (("source", "source_hash"), ("requirements", "requirements_hash"))
        if old_info.get(key) != new_info.get(key)
    ]
    if not reasons:
        # Same source and requirements: the hash moved with runtime, architecture, installer or bundler.
        changed = [k for k in ("runtime", "architecture", "installer") if old_info.get(k) != new_info.get(k)]
        return [f"bundle inputs ({', '.join(changed) or 'bundler version'}; {arrow})"]
    return [f"{' and '.join(reasons)} changed ({arrow})"]


def _config_reasons(old_p: Mapping[str, Any], new_p: Mapping[str, Any]) -> list[str]:
    reasons: list[str] = []
    for key in _changed_keys(old_p, new_p):
        if key == "Code":
            continue
        if key == "Environment":
            o_vars = (old_p.get(key) or {}).get("Variables") or {}
            n_vars = (new_p.get(key) or {}).get("Variables") or {}
            # Names only: values can be long or sensitive; the full diff below has them.
            names = [f"+{v}" for v in sorted(set(n_vars) - set(o_vars))]
            names += [f"-{v}" for v in sorted(set(o_vars) - set(n_vars))]
            names += [f"~{v}" for v in sorted(set(o_vars) & set(n_vars)) if o_vars[v] != n_vars[v]]
            reasons.append(f"config: Environment ({', '.join(names)})")
        elif key in FUNCTION_CONFIG_SCALARS and not isinstance(new_p.get(key), dict | list):
            reasons.append(f"config: {key} {render(old_p.get(key))} → {render(new_p.get(key))}")
        else:
            reasons.append(f"config: {key}")
    return reasons


def _function_of(resource: Mapping[str, Any]) -> str | None:
    refs = references(_props(resource).get("FunctionName"))
    return next(iter(sorted(refs)), None)


def function_versions(
    old: Template, new: Template, assets: Mapping[str, Mapping[str, Any]]
) -> tuple[list[VersionChange], list[VersionChange]]:
    """(functions with a new version, functions whose code changes in place without one)."""
    old_r, new_r = _resources(old), _resources(new)
    versions: dict[str, list[str]] = {}
    for lid, res in new_r.items():
        if res.get("Type") == "AWS::Lambda::Version" and (fn := _function_of(res)):
            is_new = lid not in old_r or _props(old_r[lid]) != _props(res)
            if is_new:
                versions.setdefault(fn, []).append(lid)
    with_version: list[VersionChange] = []
    in_place: list[VersionChange] = []
    for fn_id, res in sorted(new_r.items()):
        if res.get("Type") != "AWS::Lambda::Function":
            continue
        label = _path(res) or fn_id
        if fn_id not in old_r:
            if fn_id in versions:
                with_version.append(
                    VersionChange(
                        fn_id,
                        label,
                        False,
                        "new function: its first version is "
                        "published directly (CodeDeploy only runs on alias updates)",
                        ("new function",),
                    )
                )
            continue
        old_p, new_p = _props(old_r[fn_id]), _props(res)
        reasons = _code_reasons(old_p, new_p, assets) + _config_reasons(old_p, new_p)
        if fn_id not in versions:
            if old_p.get("Code") != new_p.get("Code"):
                in_place.append(
                    VersionChange(
                        fn_id,
                        label,
                        False,
                        "code updated in place: no new version, no canary",
                        tuple(reasons),
                    )
                )
            continue
        canary, detail = _canary_for(new_r, old_r, fn_id, versions[fn_id])
        with_version.append(
            VersionChange(fn_id, label, canary, detail, tuple(reasons) or ("version properties changed",))
        )
    return with_version, in_place


def _canary_for(
    new_r: Mapping[str, Any], old_r: Mapping[str, Any], fn_id: str, new_versions: Sequence[str]
) -> tuple[bool, str]:
    for lid, res in sorted(new_r.items()):
        if res.get("Type") != "AWS::Lambda::Alias" or _function_of(res) != fn_id:
            continue
        if not references(_props(res).get("FunctionVersion")) & set(new_versions):
            continue
        name = render(_props(res).get("Name"))
        hook = (res.get("UpdatePolicy") or {}).get("CodeDeployLambdaAliasUpdate")
        if lid not in old_r:
            return False, f"alias {name} is new: it starts on this version without a canary"
        if not hook:
            return False, f"alias {name} has no CodeDeploy update policy: traffic moves at once"
        group = next(iter(sorted(references(hook.get("DeploymentGroupName")))), None)
        raw = _props(new_r.get(group or "")).get("DeploymentConfigName")
        config = render(raw) if raw else f"deployment group {group}"
        # AllAtOnce still runs the hooks and watches the alarms; it just shifts traffic in one step.
        shift = ": hooks and alarms, traffic shifted in one step" if "AllAtOnce" in config else ""
        return True, f"alias {name} via CodeDeploy ({config}{shift})"
    return False, "no alias moves to the new version"


# ---------------------------------------------------------------------------------------------------------
# IAM broadening

Atom = tuple[str, str, str, str, str]  # effect, action, resource, principal, condition


def _principals(principal: Any) -> list[str]:
    if principal is None:
        return [""]
    if principal == "*" or isinstance(principal, str):
        return [render(principal)]
    if isinstance(principal, dict):
        return [f"{kind}:{render(v)}" for kind, values in sorted(principal.items()) for v in _as_list(values)]
    return [render(principal)]


def _render_condition(condition: Any) -> str:
    """`{"StringEquals": {"aws:SourceAccount": X}}` as `StringEquals aws:SourceAccount=X`."""
    if not isinstance(condition, dict) or not condition:
        return render(condition) if condition else ""
    parts = []
    for operator, tests in sorted(condition.items()):
        if isinstance(tests, dict):
            parts += [f"{operator} {key}={render(value)}" for key, value in sorted(tests.items())]
        else:
            parts.append(f"{operator}={render(tests)}")
    return "; ".join(parts)


def statement_atoms(document: Any) -> set[Atom]:
    """A policy document as (effect, action, resource, principal, condition) atoms: statement layout and
    merging (CDK minimizes policies) do not matter, only what is granted."""
    atoms: set[Atom] = set()
    if not isinstance(document, dict):
        return atoms
    for st in _as_list(document.get("Statement")):
        if not isinstance(st, dict):
            continue
        effect = str(st.get("Effect", "Allow"))
        actions = [render(a) for a in _as_list(st.get("Action"))] or [
            f"NOT {render(a)}" for a in _as_list(st.get("NotAction"))
        ]
        resources = (
            [render(r) for r in _as_list(st.get("Resource"))]
            or [f"NOT {render(r)}" for r in _as_list(st.get("NotResource"))]
            or [""]
        )
        principals = (
            _principals(st.get("Principal"))
            if "Principal" in st
            else ([f"NOT {p}" for p in _principals(st.get("NotPrincipal"))] if "NotPrincipal" in st else [""])
        )
        condition = _render_condition(st.get("Condition"))
        for action in actions or [""]:
            for resource in resources:
                for principal in principals:
                    atoms.add((effect, action, resource, principal, condition))
    return atoms


def _documents(resource: Mapping[str, Any] | None) -> dict[str, Any]:
    """Name → policy document, for every IAM-bearing property of a resource."""
    if not resource:
        return {}
    props, rtype = _props(resource), resource.get("Type")
    docs: dict[str, Any] = {}
    if rtype == "AWS::IAM::Role":
        docs["trust policy"] = props.get("AssumeRolePolicyDocument")
        for pol in _as_list(props.get("Policies")):
            docs[f"inline policy {render(pol.get('PolicyName'))}"] = pol.get("PolicyDocument")
    elif rtype in (
        "AWS::IAM::Policy",
        "AWS::IAM::ManagedPolicy",
        "AWS::SQS::QueuePolicy",
        "AWS::SNS::TopicPolicy",
        "AWS::S3::BucketPolicy",
    ):
        docs["policy"] = props.get("PolicyDocument")
    elif rtype == "AWS::KMS::Key":
        docs["key policy"] = props.get("KeyPolicy")
    elif rtype == "AWS::Lambda::Permission":
        # The statement Lambda writes into the function's resource policy for these properties.
        keys = (
            ("SourceArn", "ArnLike", "AWS:SourceArn"),
            ("SourceAccount", "StringEquals", "AWS:SourceAccount"),
            ("PrincipalOrgID", "StringEquals", "aws:PrincipalOrgID"),
        )
        condition: dict[str, dict[str, Any]] = {}
        for prop, operator, key in keys:
            if prop in props:
                condition.setdefault(operator, {})[key] = props[prop]
        docs["resource policy"] = {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": props.get("Action"),
                    "Resource": props.get("FunctionName"),
                    "Principal": props.get("Principal"),
                    **({"Condition": condition} if condition else {}),
                }
            ]
        }
    return docs


def _is_wild(text: str) -> bool:
    return "*" in text


def _atom_message(where: str, atoms: Iterable[Atom]) -> tuple[str, bool]:
    atoms = sorted(atoms)
    effect, _, resource, principal, condition = atoms[0]
    actions = sorted({a[1] for a in atoms})
    flags = []
    if any(a in ("*", "NOT *") or a.endswith(":*") or a.startswith("NOT ") for a in actions):
        flags.append("wildcard action")
    elif any(_is_wild(a) for a in actions):
        flags.append("action pattern")
    if resource in ("*", "") and where != "trust policy":
        flags.append("ALL resources")
    elif _is_wild(resource):
        flags.append("resource pattern")
    if principal in ("*", "AWS:*"):
        flags.append("ANY principal")
    verb = "trust widened: " if where == "trust policy" else ""
    text = f"{verb}{where}: new {effect} {', '.join(_md(a, 60) for a in actions)}"
    if resource:
        text += f" on {_md(resource)}"
    if principal:
        text += f" for {_md(principal)}"
    if condition:
        text += f" when {_md(condition, 80)}"
    severe = bool({"wildcard action", "ALL resources", "ANY principal"} & set(flags)) or (
        where == "trust policy" and principal.startswith("AWS:")
    )
    if flags:
        text += f" (**{', '.join(flags)}**)"
    return text, severe


def iam_findings(old: Template, new: Template) -> list[Finding]:
    old_r, new_r = _resources(old), _resources(new)
    findings: list[Finding] = []
    for lid, res in sorted(new_r.items()):
        rtype = res.get("Type", "")
        before = old_r.get(lid)
        new_docs, old_docs = _documents(res), _documents(before)
        for where, doc in new_docs.items():
            old_atoms = statement_atoms(old_docs.get(where))
            new_atoms = statement_atoms(doc)
            grouped: dict[tuple[str, str, str, str], list[Atom]] = {}
            for atom in new_atoms - old_atoms:
                if atom[0] == "Allow":
                    grouped.setdefault((atom[0], atom[2], atom[3], atom[4]), []).append(atom)
            for group in grouped.values():
                message, severe = _atom_message(where, group)
                findings.append(Finding(lid, rtype, message, severe))
            for atom in sorted(a for a in old_atoms - new_atoms if a[0] == "Deny"):
                findings.append(
                    Finding(lid, rtype, f"{where}: Deny removed: {_md(atom[1])} on {_md(atom[2])}", True)
                )
        props, old_props = _props(res), _props(before)
        if rtype == "AWS::IAM::Role":
            old_arns = {render(a) for a in _as_list(old_props.get("ManagedPolicyArns"))}
            for arn in sorted({render(a) for a in _as_list(props.get("ManagedPolicyArns"))} - old_arns):
                severe = bool(BROAD_MANAGED_POLICIES.search(arn))
                findings.append(Finding(lid, rtype, f"new managed policy {_md(arn)}", severe))
            if old_props.get("PermissionsBoundary") and not props.get("PermissionsBoundary"):
                findings.append(Finding(lid, rtype, "permissions boundary removed", True))
        if rtype in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and before is not None:
            for kind in ("Roles", "Users", "Groups"):
                old_targets = {render(t) for t in _as_list(old_props.get(kind))}
                for target in sorted({render(t) for t in _as_list(props.get(kind))} - old_targets):
                    findings.append(Finding(lid, rtype, f"now attached to {kind[:-1].lower()} {_md(target)}"))
    return findings


# ---------------------------------------------------------------------------------------------------------
# Security-group ingress broadening

Rule = tuple[str, int, int, str]  # protocol, from port, to port, source


def _rule(raw: Mapping[str, Any]) -> Rule:
    protocol = str(render(raw.get("IpProtocol", "-1"))).lower()
    protocol = {"6": "tcp", "17": "udp", "1": "icmp"}.get(protocol, protocol)
    if protocol in ("-1", "all"):
        low, high = 0, 65535
    else:
        low = int(raw.get("FromPort", 0)) if not isinstance(raw.get("FromPort"), dict) else 0
        high = int(raw.get("ToPort", 65535)) if not isinstance(raw.get("ToPort"), dict) else 65535
        if protocol in ("tcp", "udp") and (low, high) == (-1, -1):
            low, high = 0, 65535
    source = next(
        (
            render(raw[k])
            for k in (
                "CidrIp",
                "CidrIpv6",
                "SourceSecurityGroupId",
                "SourcePrefixListId",
                "SourceSecurityGroupName",
            )
            if k in raw
        ),
        "?",
    )
    return ("all" if protocol in ("-1", "all") else protocol, low, high, source)


def _ingress_by_group(template: Template) -> dict[str, set[Rule]]:
    groups: dict[str, set[Rule]] = {}
    for lid, res in _resources(template).items():
        props = _props(res)
        if res.get("Type") == "AWS::EC2::SecurityGroup":
            groups.setdefault(lid, set()).update(
                _rule(r) for r in _as_list(props.get("SecurityGroupIngress"))
            )
        elif res.get("Type") == "AWS::EC2::SecurityGroupIngress":
            group = next(iter(sorted(references(props.get("GroupId")))), None) or render(props.get("GroupId"))
            groups.setdefault(group, set()).add(_rule(props))
    return groups


def _ports(rule: Rule) -> str:
    if rule[0] == "all":
        return "all traffic"
    return f"{rule[0]} {rule[1]}" if rule[1] == rule[2] else f"{rule[0]} {rule[1]}-{rule[2]}"


def _network(source: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(source, strict=False)
    except ValueError:
        return None


def _strictly_inside(narrow: Any, wide: Any) -> bool:
    """Whether network `narrow` lies inside a different, wider network `wide` (same IP version)."""
    if narrow is None or wide is None or narrow == wide:
        return False
    both_v4 = isinstance(narrow, ipaddress.IPv4Network) and isinstance(wide, ipaddress.IPv4Network)
    both_v6 = isinstance(narrow, ipaddress.IPv6Network) and isinstance(wide, ipaddress.IPv6Network)
    return (both_v4 or both_v6) and narrow.subnet_of(wide)


def security_group_findings(old: Template, new: Template) -> list[Finding]:
    old_g, new_g = _ingress_by_group(old), _ingress_by_group(new)
    findings = []
    for group, rules in sorted(new_g.items()):
        before = old_g.get(group, set())
        for rule in sorted(rules - before):
            notes = []
            if rule[3] in INTERNET:
                notes.append("OPEN TO THE INTERNET")
            if rule[0] == "all" or (rule[1], rule[2]) == (0, 65535):
                notes.append("all ports")
            new_net = _network(rule[3])
            for old_rule in sorted(before):
                same_proto = old_rule[0] == rule[0] or rule[0] == "all"
                if not same_proto:
                    continue
                old_net = _network(old_rule[3])
                wider_ports = (
                    rule[1] <= old_rule[1]
                    and old_rule[2] <= rule[2]
                    and (rule[1], rule[2]) != (old_rule[1], old_rule[2])
                )
                same_source = old_rule[3] == rule[3]
                wider_source = _strictly_inside(old_net, new_net)
                if wider_ports and (same_source or wider_source):
                    notes.append(f"wider ports than before ({_ports(old_rule)})")
                if wider_source and rule[1] <= old_rule[1] and old_rule[2] <= rule[2]:
                    notes.append(f"wider source than before ({old_rule[3]})")
            message = f"new ingress {_ports(rule)} from {_md(rule[3])}"
            if notes:
                message += f" (**{', '.join(dict.fromkeys(notes))}**)"
            severe = rule[3] in INTERNET or any(n.startswith("wider") for n in notes)
            findings.append(Finding(group, "AWS::EC2::SecurityGroup", message, severe))
    return findings


# ---------------------------------------------------------------------------------------------------------
# Alarms


def alarm_name(logical_id: str, resource: Mapping[str, Any]) -> str:
    props = _props(resource)
    if props.get("AlarmName"):
        return render(props["AlarmName"])
    text = render(props.get("AlarmDescription") or "").strip()
    if text:
        first = text.splitlines()[0]
        return first if len(first) <= 80 else first[:79] + "…"
    return logical_id


def _describe_alarm(props: Mapping[str, Any]) -> str:
    if "AlarmRule" in props:
        return f"rule {_md(render(props['AlarmRule']), 100)}"
    metric = render(props.get("MetricName", "metric math")) if "Metrics" not in props else "metric math"
    stat = render(props.get("Statistic") or props.get("ExtendedStatistic") or "")
    comparison = {
        "GreaterThanOrEqualToThreshold": ">=",
        "GreaterThanThreshold": ">",
        "LessThanThreshold": "<",
        "LessThanOrEqualToThreshold": "<=",
    }.get(str(props.get("ComparisonOperator")), str(props.get("ComparisonOperator", "?")))
    period = props.get("Period")
    window = (
        f"{render(props.get('EvaluationPeriods'))} x {render(period)}s"
        if period
        else (f"{render(props.get('EvaluationPeriods'))} periods")
    )
    return f"{stat} {metric} {comparison} {render(props.get('Threshold'))} over {window}".strip()


def alarm_changes(old: Template, new: Template) -> list[AlarmChange]:
    old_r, new_r = _resources(old), _resources(new)
    out: list[AlarmChange] = []
    for lid in sorted(set(old_r) | set(new_r)):
        o, n = old_r.get(lid), new_r.get(lid)
        if not any(r and r.get("Type") in ALARM_TYPES for r in (o, n)):
            continue
        if o is None and n is not None:
            out.append(AlarmChange(lid, alarm_name(lid, n), "added", (_describe_alarm(_props(n)),)))
        elif n is None and o is not None:
            out.append(AlarmChange(lid, alarm_name(lid, o), "removed", (_describe_alarm(_props(o)),)))
        elif o is not None and n is not None:
            op, np_ = _props(o), _props(n)
            details = []
            for key in ALARM_FIELDS:
                if op.get(key) == np_.get(key):
                    continue
                if key in ALARM_ACTION_FIELDS:
                    before = {render(a) for a in _as_list(op.get(key))}
                    after = {render(a) for a in _as_list(np_.get(key))}
                    parts = [f"+{_md(a)}" for a in sorted(after - before)]
                    parts += [f"-{_md(a)}" for a in sorted(before - after)]
                    details.append(f"{key}: {', '.join(parts)}")
                elif key in ("Dimensions", "Metrics", "AlarmRule", "AlarmDescription"):
                    details.append(f"{key} changed")
                else:
                    details.append(f"{key}: {render(op.get(key))} → {render(np_.get(key))}")
            others = [k for k in _changed_keys(op, np_) if k not in ALARM_FIELDS]
            details += [f"{k} changed" for k in others]
            if details:
                out.append(AlarmChange(lid, alarm_name(lid, n), "modified", tuple(details)))
    return out


# ---------------------------------------------------------------------------------------------------------
# Whole diff and Markdown


def diff_templates(
    old: Template,
    new: Template,
    *,
    policy: Mapping[str, Any] | None = None,
    assets: Mapping[str, Mapping[str, Any]] | None = None,
    stack: str = "stack",
    notes: Sequence[str] = (),
) -> StackDiff:
    """Everything the summary reports, as data. `assets` maps an asset key (S3Key without .zip) to that
    bundle's build_info.json; missing entries only make the version reasons less precise."""
    assets = assets or {}
    versions, in_place = function_versions(old, new, assets)
    return StackDiff(
        stack=stack,
        changes=tuple(resource_changes(old, new, policy)),
        versions=tuple(versions),
        code_without_version=tuple(in_place),
        iam=tuple(iam_findings(old, new)),
        security_groups=tuple(security_group_findings(old, new)),
        alarms=tuple(alarm_changes(old, new)),
        protected=protected_ids(policy),
        policy_given=policy is not None,
        notes=tuple(notes),
    )


def _label(change: ResourceChange) -> str:
    where = f", {change.path}" if change.path else ""
    return f"{_md(change.logical_id)} ({change.type}{where})"


def render_markdown(diff: StackDiff) -> str:
    lines = [f"### `{diff.stack}`", ""]
    lines += [f"> {note}" for note in diff.notes] + ([""] if diff.notes else [])
    if not diff.has_changes:
        lines += ["No changes.", ""]
        return "\n".join(lines)
    counts = {kind: len(diff.of_kind(kind)) for kind in ("added", "modified", "replaced", "removed")}
    lines += [" · ".join(f"**{n}** {kind}" for kind, n in counts.items()), ""]

    if diff.blocked:
        lines += [
            "> [!CAUTION]",
            f"> **{len(diff.blocked)} change(s) {BLOCKED}**: CloudFormation will refuse the update and "
            "roll back the whole deploy.",
            ">",
        ]
        lines += [f"> - {_label(c)}: {c.kind} ({c.blocked_by} denied)" for c in diff.blocked]
        lines.append("")
    elif not diff.policy_given:
        lines += ["_No stack policy given: replacements and removals were not checked against one._", ""]

    lines += ["| Change | Count |", "|---|---:|"]
    lines += [f"| {kind.capitalize()} | {n} |" for kind, n in counts.items()]
    lines.append("")

    if diff.versions or diff.code_without_version:
        canaries = [v for v in diff.versions if v.canary]
        lines += [
            f"#### New function versions ({len(canaries)} canary deployment(s) will run)",
            "",
            "| Function | New version | Canary | Why |",
            "|---|---|---|---|",
        ]
        for v in (*diff.versions, *diff.code_without_version):
            is_version = v in diff.versions
            canary = f"**a canary deployment will run**: {v.detail}" if v.canary else f"no: {v.detail}"
            lines.append(
                f"| {v.label} ({_md(v.function_id)}) | {'yes' if is_version else 'no'} | {canary} | "
                f"{'; '.join(v.reasons) or '—'} |"
            )
        lines.append("")

    for kind, title in (("replaced", "Replaced"), ("removed", "Removed")):
        items = diff.of_kind(kind)  # type: ignore[arg-type]
        listed = [c for c in items if c.type not in CONTENT_HASHED_TYPES or c.blocked_by]
        if not listed:
            continue
        lines += [f"#### {title}", ""]
        for c in listed:
            text = f"- {_label(c)}"
            if c.reasons:
                text += f": {'; '.join(c.reasons)}"
            if c.looks_like:
                text += f" (looks renamed to {_md(c.looks_like)}: CloudFormation deletes this one)"
            if c.blocked_by:
                text += f" — **{BLOCKED}** ({c.blocked_by} denied)"
            lines.append(text)
        lines.append("")

    for title, findings in (
        ("IAM broadening", diff.iam),
        ("Security-group broadening", diff.security_groups),
    ):
        if findings:
            lines += [f"#### {title}", ""]
            lines += [
                f"- {'⚠️ ' if f.severe else ''}{_md(f.logical_id)} ({f.type}): {f.message}" for f in findings
            ]
            lines.append("")

    if diff.alarms:
        lines += ["#### Alarms", ""]
        for a in diff.alarms:
            lines.append(f"- {a.kind}: {_md(a.logical_id)} “{a.name}”: {'; '.join(a.details)}")
        lines.append("")

    added = diff.of_kind("added")
    listed = [c for c in added if c.type not in CONTENT_HASHED_TYPES]
    if listed:
        lines += ["#### Added", ""]
        lines += [
            f"- {_label(c)}" + (f" (looks renamed from {_md(c.looks_like)})" if c.looks_like else "")
            for c in listed
        ]
        lines.append("")
    modified = diff.of_kind("modified")
    if modified:
        lines += ["#### Modified (in place)", ""]
        lines += [
            f"- {_label(c)}: {', '.join(c.changed)}" + (f" — **{BLOCKED}**" if c.blocked_by else "")
            for c in modified
        ]
        lines.append("")
    churn = [
        c
        for c in diff.changes
        if c.type in CONTENT_HASHED_TYPES and not c.blocked_by and c.kind in ("added", "removed", "replaced")
    ]
    if churn:
        lines += [
            f"_Also {len(churn)} Lambda version / API deployment resource(s) added or removed: CDK "
            "re-creates them whenever their content changes (expected)._",
            "",
        ]
    if diff.protected:
        lines += [
            "<details><summary>Logical IDs the stack policy protects from replacement and deletion</summary>",
            "",
            ", ".join(f"`{p}`" for p in diff.protected),
            "",
            "</details>",
            "",
        ]
    return "\n".join(lines)


def summarize(
    old: Template,
    new: Template,
    *,
    policy: Mapping[str, Any] | None = None,
    assets: Mapping[str, Mapping[str, Any]] | None = None,
    stack: str = "stack",
    notes: Sequence[str] = (),
) -> str:
    return render_markdown(diff_templates(old, new, policy=policy, assets=assets, stack=stack, notes=notes))


# ---------------------------------------------------------------------------------------------------------
# Files


def load_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DiffInputError(f"{what} {path}: file not found") from None
    except OSError as err:
        raise DiffInputError(f"{what} {path}: cannot read it ({err.strerror})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DiffInputError(
            f"{what} {path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
        ) from None


def load_template(path: Path, what: str = "template") -> dict[str, Any]:
    data = load_json(path, what)
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise DiffInputError(
            f"{what} {path}: no 'Resources' object; is it a CloudFormation template "
            "(cdk.out/<stack>.template.json)?"
        )
    for lid, res in data["Resources"].items():
        if not isinstance(res, dict) or not isinstance(res.get("Type"), str):
            raise DiffInputError(f"{what} {path}: resource {lid!r} has no 'Type'")
    return data


def load_policy(path: Path) -> dict[str, Any]:
    data = load_json(path, "stack policy")
    statements = data.get("Statement") if isinstance(data, dict) else None
    if not isinstance(statements, list) or not all(
        isinstance(s, dict) and s.get("Effect") in ("Allow", "Deny") for s in statements
    ):
        raise DiffInputError(
            f'stack policy {path}: expected {{"Statement": [{{"Effect": "Allow"|"Deny", '
            "...}, ...]}} (a CloudFormation stack policy document)"
        )
    return data


def load_asset_info(cdk_out: Path, template: Template) -> dict[str, dict[str, Any]]:
    """build_info.json of each function's code asset in a cloud assembly, keyed by asset key.

    Assets are found from the resource's aws:asset:path metadata, else as asset.<key>[.zip]; a missing or
    unreadable asset is skipped (the reason then says "source/requirements" without telling them apart).
    """
    found: dict[str, dict[str, Any]] = {}
    for res in _resources(template).values():
        if res.get("Type") != "AWS::Lambda::Function" or not (key := _asset_key(_props(res))):
            continue
        meta_path = (res.get("Metadata") or {}).get("aws:asset:path")
        candidates = [cdk_out / meta_path] if isinstance(meta_path, str) else []
        candidates += [cdk_out / f"asset.{key}.zip", cdk_out / f"asset.{key}"]
        for candidate in candidates:
            info = _read_build_info(candidate)
            if info is not None:
                found[key] = info
                break
    return found


def _read_build_info(path: Path) -> dict[str, Any] | None:
    try:
        if path.is_dir():
            raw = (path / "build_info.json").read_text()
        elif path.is_file() and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                raw = archive.read("build_info.json").decode()
        else:
            return None
        data = json.loads(raw)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class CliArgs:
    old: Path
    new: Path
    policy: Path | None = None
    stack: str | None = None
    old_assets: Path | None = None
    new_assets: Path | None = None
    notes: tuple[str, ...] = field(default=())


def parse_args(argv: Sequence[str]) -> CliArgs:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--old", type=Path, required=True, help="template before (deployed or base ref)")
    parser.add_argument("--new", type=Path, required=True, help="template after (this change)")
    parser.add_argument(
        "--policy", type=Path, help="stack policy in force (cdk.out/<stack>.stack-policy.json)"
    )
    parser.add_argument("--stack", help="stack name for the heading (default: from the file name)")
    parser.add_argument("--old-assets", type=Path, help="cloud assembly holding the old template's assets")
    parser.add_argument("--new-assets", type=Path, help="cloud assembly holding the new template's assets")
    ns = parser.parse_args(argv)
    return CliArgs(
        old=ns.old,
        new=ns.new,
        policy=ns.policy,
        stack=ns.stack,
        old_assets=ns.old_assets,
        new_assets=ns.new_assets,
    )


def run(args: CliArgs) -> str:
    old = load_template(args.old, "old template")
    new = load_template(args.new, "new template")
    policy = load_policy(args.policy) if args.policy else None
    assets: dict[str, dict[str, Any]] = {}
    for directory, template in ((args.old_assets, old), (args.new_assets, new)):
        if directory is not None:
            if not directory.is_dir():
                raise DiffInputError(f"assets folder {directory}: not a directory (pass a cdk.out folder)")
            assets.update(load_asset_info(directory, template))
    stack = args.stack or args.new.name.removesuffix(".template.json")
    return summarize(old, new, policy=policy, assets=assets, stack=stack, notes=args.notes)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        print(run(args))
    except DiffInputError as err:
        print(f"diff_summary: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
