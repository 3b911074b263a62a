#!/usr/bin/env python3
"""A risk-annotated Markdown summary of what deploying one CloudFormation template over another will do.

    python -m scripts.pr_diff.summary --old OLD.template.json --new NEW.template.json \
        [--policy STACK.stack-policy.json] [--stack NAME] [--old-assets CDK_OUT] [--new-assets CDK_OUT]

`cdk diff` lists every property change; a reviewer needs the few that matter: what is replaced or removed
(and whether the stack policy will refuse it, failing the deploy), which functions get a new version and so a
CodeDeploy canary (and why: source, requirements or configuration), IAM and security-group broadening, and
alarm changes.

How CloudFormation applies each change (update in place, may replace, will replace, destroy) and which IAM
statements and security-group rules are added or removed come from `@aws-cdk/cloudformation-diff`, the
library behind `cdk diff` (diff_library.py runs scripts/pr_diff/cfn_diff.mjs). This module adds what is this
project's own: the stack policy's verdict, canaries, alarms, rename hints and severity flags. Inputs are
read by diff_inputs.py, the result types are in diff_model.py, the Markdown is written by diff_render.py.
Everything is a function of the two templates, the stack policy in force and the bundle metadata
(build_info.json of each asset), so it is tested on fixture template pairs without AWS.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scripts.pr_diff.inputs import DiffInputError, asset_key, load_asset_info, load_policy, load_template
from scripts.pr_diff.library import CfnDiffError, LibraryDiff, library_diff, run_cfn_diff
from scripts.pr_diff.model import (
    CONTENT_HASHED_TYPES,
    AlarmChange,
    ChangeKind,
    Finding,
    ResourceChange,
    StackDiff,
    Template,
    VersionChange,
)
from scripts.pr_diff.render import md, render_markdown

# Resource attributes CloudFormation does not act on: a change to only these is no change.
INERT_ATTRIBUTES = frozenset({"Metadata", "DependsOn"})
ALARM_TYPES = frozenset({"AWS::CloudWatch::Alarm", "AWS::CloudWatch::CompositeAlarm"})
ALARM_ACTION_FIELDS = frozenset({"AlarmActions", "OKActions", "InsufficientDataActions"})
BROAD_MANAGED_POLICIES = re.compile(r"(AdministratorAccess|PowerUserAccess|IAMFullAccess|FullAccess)$")


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
# Resource-level changes


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


def _reasons(entry: Mapping[str, Any], impact: str) -> list[str]:
    """Why the library replaces a resource: the properties that carry the replacement impact."""
    if entry["oldType"] != entry["newType"]:
        return ["resource type changed"]
    maybe = " (CloudFormation replaces the resource for some new values)" if impact == "MAY_REPLACE" else ""
    return [
        f"{name} refers to replaced {', '.join(prop['replacedReferences'])}"
        if prop["replacedReferences"]
        else f"{name} changed{maybe}"
        for name, prop in sorted(entry["properties"].items())
        if prop["impact"] == impact
    ]


REPLACING: dict[str, ChangeKind] = {"WILL_REPLACE": "replaced", "MAY_REPLACE": "may be replaced"}


def resource_changes(
    old: Template, new: Template, policy: Mapping[str, Any] | None, library: LibraryDiff | None = None
) -> list[ResourceChange]:
    """Each resource's change, as the library classifies it, checked against the stack policy."""
    entries: Mapping[str, Any] = (library or library_diff(old, new))["resources"]
    old_r, new_r = _resources(old), _resources(new)
    removed = sorted(lid for lid, e in entries.items() if e["newType"] is None)
    added = sorted(lid for lid, e in entries.items() if e["oldType"] is None)
    twins = _rename_pairs(old_r, new_r, removed, added)
    out: list[ResourceChange] = []
    for lid, entry in sorted(entries.items()):
        impact, reasons, changed = str(entry["impact"]), [], ()
        if lid in added or lid in removed:
            kind: ChangeKind = "added" if lid in added else "removed"
            if impact == "WILL_ORPHAN":
                reasons = ["retained: its DeletionPolicy keeps it in the account"]
        else:
            other = tuple(a for a in entry["other"] if a not in INERT_ATTRIBUTES)
            changed = (*sorted(entry["properties"]), *other)
            if not changed and entry["oldType"] == entry["newType"]:
                continue  # only Metadata or DependsOn changed
            kind = REPLACING.get(impact, "modified")
            reasons = _reasons(entry, impact) if kind != "modified" else []
        action = {"added": None, "removed": "Update:Delete", "modified": "Update:Modify"}.get(
            kind, "Update:Replace"
        )
        res = new_r.get(lid) or old_r[lid]
        denied = action is not None and policy_denies(policy, action, lid, old_r[lid]["Type"])
        out.append(
            ResourceChange(
                lid,
                res["Type"],
                kind,
                _path(res),
                changed=changed,
                reasons=tuple(reasons),
                impact=impact,
                blocked_by=action if denied else None,
                looks_like=twins.get(lid),
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


def _code_reasons(
    old_p: Mapping[str, Any], new_p: Mapping[str, Any], assets: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    if old_p.get("Code") == new_p.get("Code"):
        return []
    old_key, new_key = asset_key(old_p), asset_key(new_p)
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
        # Same source and requirements: the hash moved with runtime, architecture, installer or the bundler.
        changed = [k for k in ("runtime", "architecture", "installer") if old_info.get(k) != new_info.get(k)]
        return [f"bundle inputs ({', '.join(changed) or 'the bundler: its code, Python or zlib'}; {arrow})"]
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
# IAM and security groups: what the library reports as broadening, with this project's severity flags

INTERNET = frozenset({"0.0.0.0/0", "::/0"})


def _atoms(statement: Mapping[str, Any]) -> set[tuple[str, ...]]:
    """A statement as (effect, condition, negations, action, resource, principal) atoms.

    CDK merges and splits statements (minimizePolicies) whenever a grant changes; the library compares whole
    statements, so re-arranged grants come out as removed + added. Atoms see through that: an added Allow
    whose every atom a removed Allow had is no new permission (likewise a removed Deny re-added)."""
    kinds = ("actions", "resources", "principals")
    head = (
        statement["effect"],
        json.dumps(statement.get("condition"), sort_keys=True),
        *("NOT" if statement[k]["not"] else "" for k in kinds),
    )
    values = [statement[k]["values"] or [""] for k in kinds]
    return {(*head, a, r, p) for a in values[0] for r in values[1] for p in values[2]}


def _statement_message(statement: Mapping[str, Any]) -> tuple[str, bool]:
    """The library's rendering of an added statement (NOT prefixes, principals, condition), flagged."""
    shown = statement["rendered"]
    actions, principals = statement["actions"]["values"], statement["principals"]["values"]
    flags = [
        flag
        for flag, hit in (
            (
                "wildcard action",
                statement["actions"]["not"] or any(a == "*" or a.endswith(":*") for a in actions),
            ),
            ("ALL resources", statement["resources"]["not"] or "*" in statement["resources"]["values"]),
            ("ANY principal", any(p in ("*", "AWS:*") for p in principals)),
        )
        if hit
    ]
    # A trust policy letting in another account's principal matters as much as a wildcard.
    trust = bool(actions) and all(a.startswith("sts:AssumeRole") for a in actions)
    text = ("trust widened: " if trust else "") + f"new {shown['effect']} {md(shown['action'], 60)}"
    for word, key, limit in (
        (" on ", "resource", 120),
        (" for ", "principal", 120),
        (" when ", "condition", 80),
    ):
        if shown[key]:
            text += f"{word}{md(shown[key], limit)}"
    if flags:
        text += f" (**{', '.join(flags)}**)"
    return text, bool(flags) or (trust and any(p.startswith("AWS:") for p in principals))


def _source(item: Mapping[str, Any], templates: Sequence[Template]) -> tuple[str, str]:
    """(logical ID, type) of the resource the library found a statement, policy or rule in."""
    lid = next(iter(item.get("sources") or []), "?")
    rtype = next((str(_resources(t)[lid]["Type"]) for t in templates if lid in _resources(t)), "?")
    return lid, rtype


def iam_findings(old: Template, new: Template, library: LibraryDiff | None = None) -> list[Finding]:
    """The library's statement and managed-policy changes that broaden permissions; plus removed
    permissions boundaries."""
    iam = (library or library_diff(old, new))["iam"]
    # The library counts an Allow with NotAction/NotResource/NotPrincipal as "negative", not broadening,
    # yet it grants everything but the listed values. The effect decides: an Allow added or a Deny removed
    # broadens, unless the same atoms come back in another statement (regrouped, see _atoms).
    allows_removed, denies_added = (
        set().union(*(_atoms(s) for s in iam[key] if s["effect"] == effect))
        for key, effect in (("statementRemovals", "Allow"), ("statementAdditions", "Deny"))
    )
    findings = [
        Finding(*_source(st, (new, old)), *_statement_message(st))
        for st in iam["statementAdditions"]
        if st["effect"] == "Allow" and not _atoms(st) <= allows_removed
    ]
    for st in iam["statementRemovals"]:
        if st["effect"] == "Deny" and not _atoms(st) <= denies_added:
            shown = st["rendered"]
            what = f"{shown['effect']} removed: {md(shown['action'])} on {md(shown['resource'])}"
            findings.append(Finding(*_source(st, (old, new)), what, True))
    for att in iam["managedPolicyAdditions"]:
        arn, severe = att["managedPolicyArn"], bool(BROAD_MANAGED_POLICIES.search(att["managedPolicyArn"]))
        findings.append(Finding(*_source(att, (new, old)), f"new managed policy {md(arn)}", severe))
    # The library reads statements and managed policies but not a role's PermissionsBoundary, whose
    # removal lifts the cap on every grant of the role at once.
    for lid, res in sorted(_resources(new).items()):
        before = _resources(old).get(lid)
        if (
            res.get("Type") == "AWS::IAM::Role"
            and before is not None
            and before.get("Type") == res.get("Type")
            and _props(before).get("PermissionsBoundary")
            and not _props(res).get("PermissionsBoundary")
        ):
            findings.append(Finding(lid, "AWS::IAM::Role", "permissions boundary removed", True))
    return findings


def security_group_findings(
    old: Template, new: Template, library: LibraryDiff | None = None
) -> list[Finding]:
    """Ingress rules the library reports added, in its words (protocol, peer), flagged when open to the
    internet or on all ports; the group's rules before the change are listed for comparison."""
    groups = (library or library_diff(old, new))["securityGroups"]
    findings = []
    for rule in groups["ingressRuleAdditions"]:
        notes = []
        if (rule.get("peer") or {}).get("ip") in INTERNET:
            notes.append("OPEN TO THE INTERNET")
        if (
            rule["ipProtocol"] == "-1"
            or rule.get("fromPort") == -1
            or (rule.get("fromPort"), rule.get("toPort")) == (0, 65535)
        ):
            notes.append("all ports")
        message = f"new ingress {rule['protocol']} from {md(rule['peerText'])}"
        if notes:
            message += f" (**{', '.join(notes)}**)"
        before = [
            f"{b['protocol']} from {b['peerText']}"
            for b in groups["ingressRulesBefore"]
            if b["groupId"] == rule["groupId"]
        ]
        if before:
            message += f"; the group had {md('; '.join(before))}"
        findings.append(Finding(*_source(rule, (new, old)), message, bool(notes)))
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
        return f"rule {md(render(props['AlarmRule']), 100)}"
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
            for key in _changed_keys(op, np_):
                if key in ALARM_ACTION_FIELDS:
                    before, after = ({render(a) for a in _as_list(p.get(key))} for p in (op, np_))
                    parts = [f"+{md(a)}" for a in sorted(after - before)]
                    details.append(
                        f"{key}: {', '.join(parts + [f'-{md(a)}' for a in sorted(before - after)])}"
                    )
                elif key == "AlarmDescription" or isinstance(op.get(key, np_.get(key)), dict | list):
                    details.append(f"{key} changed")
                else:
                    details.append(f"{key}: {render(op.get(key))} → {render(np_.get(key))}")
            if details:  # values first, then what only "changed"
                details.sort(key=lambda d: d.endswith(" changed"))
                out.append(AlarmChange(lid, alarm_name(lid, n), "modified", tuple(details)))
    return out


# ---------------------------------------------------------------------------------------------------------
# Whole diff


def diff_templates(
    old: Template,
    new: Template,
    *,
    policy: Mapping[str, Any] | None = None,
    assets: Mapping[str, Mapping[str, Any]] | None = None,
    stack: str = "stack",
    notes: Sequence[str] = (),
    library: LibraryDiff | None = None,
) -> StackDiff:
    """Everything the summary reports, as data. `assets` maps an asset key (S3Key without .zip) to that
    bundle's build_info.json; missing entries only make the version reasons less precise. `library` is
    scripts/pr_diff/cfn_diff.mjs's output for these two templates (computed here when not given)."""
    assets = assets or {}
    library = library or library_diff(old, new)
    versions, in_place = function_versions(old, new, assets)
    return StackDiff(
        stack=stack,
        changes=tuple(resource_changes(old, new, policy, library)),
        versions=tuple(versions),
        code_without_version=tuple(in_place),
        iam=tuple(iam_findings(old, new, library)),
        security_groups=tuple(security_group_findings(old, new, library)),
        alarms=tuple(alarm_changes(old, new)),
        protected=protected_ids(policy),
        policy_given=policy is not None,
        notes=tuple(notes),
    )


def summarize(
    old: Template,
    new: Template,
    *,
    policy: Mapping[str, Any] | None = None,
    assets: Mapping[str, Mapping[str, Any]] | None = None,
    stack: str = "stack",
    notes: Sequence[str] = (),
    library: LibraryDiff | None = None,
    extra_sections: Sequence[str] = (),
) -> str:
    diff = diff_templates(old, new, policy=policy, assets=assets, stack=stack, notes=notes, library=library)
    return render_markdown(diff, extra_sections)


# ---------------------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--old", type=Path, required=True, help="template before (deployed or base ref)")
    parser.add_argument("--new", type=Path, required=True, help="template after (this change)")
    parser.add_argument(
        "--policy", type=Path, help="stack policy in force (cdk.out/<stack>.stack-policy.json)"
    )
    parser.add_argument("--stack", help="stack name for the heading (default: from the file name)")
    parser.add_argument("--old-assets", type=Path, help="cloud assembly holding the old template's assets")
    parser.add_argument("--new-assets", type=Path, help="cloud assembly holding the new template's assets")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> str:
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
    library = run_cfn_diff(args.old, args.new)
    return summarize(old, new, policy=policy, assets=assets, stack=stack, library=library)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        print(run(args))
    except DiffInputError as err:
        print(f"diff_summary: error: {err}", file=sys.stderr)
        return 2
    except CfnDiffError as err:
        print(f"diff_summary: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
