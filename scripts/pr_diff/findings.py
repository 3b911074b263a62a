"""Findings a reviewer must see: IAM and security-group broadening (from what the library reports, with this
project's severity flags) and alarm changes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from scripts.pr_diff.library import LibraryDiff, library_diff
from scripts.pr_diff.model import (
    AlarmChange,
    Finding,
    Template,
)
from scripts.pr_diff.render import md
from scripts.pr_diff.values import _as_list, _changed_keys, _props, _resources, render

ALARM_TYPES = frozenset({"AWS::CloudWatch::Alarm", "AWS::CloudWatch::CompositeAlarm"})
ALARM_ACTION_FIELDS = frozenset({"AlarmActions", "OKActions", "InsufficientDataActions"})
BROAD_MANAGED_POLICIES = re.compile(r"(AdministratorAccess|PowerUserAccess|IAMFullAccess|FullAccess)$")
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
