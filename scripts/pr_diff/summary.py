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
library behind `cdk diff` (library.py runs cfn_diff.mjs). This module adds what is this project's own: the
stack policy's verdict, canaries, alarms, rename hints and severity flags (values.py reads CloudFormation
values and the policy, findings.py flags IAM, security-group and alarm changes). Inputs are read by
inputs.py, the result types are in model.py, the Markdown is written by render.py.
Everything is a function of the two templates, the stack policy in force and the bundle metadata
(build_info.json of each asset), so it is tested on fixture template pairs without AWS.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scripts.pr_diff.findings import alarm_changes, iam_findings, security_group_findings
from scripts.pr_diff.inputs import DiffInputError, asset_key, load_asset_info, load_policy, load_template
from scripts.pr_diff.library import CfnDiffError, LibraryDiff, library_diff, run_cfn_diff
from scripts.pr_diff.model import (
    CONTENT_HASHED_TYPES,
    ChangeKind,
    ResourceChange,
    StackDiff,
    Template,
    VersionChange,
)
from scripts.pr_diff.render import render_markdown
from scripts.pr_diff.values import (
    _changed_keys,
    _path,
    _props,
    _resources,
    policy_denies,
    protected_ids,
    references,
    render,
)

# Resource attributes CloudFormation does not act on: a change to only these is no change.
INERT_ATTRIBUTES = frozenset({"Metadata", "DependsOn"})


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


# The keywords repeat diff_templates' on purpose: spelled out, callers' keywords are type-checked.
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


# The CLI tail every tool here shares (the error on stderr, an exit code): too small to factor out.
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
