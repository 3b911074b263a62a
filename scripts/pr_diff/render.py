"""The PR diff summary as Markdown (a GitHub comment): warnings first, then the tables and lists."""

from __future__ import annotations

from collections.abc import Sequence

from scripts.pr_diff.model import CONTENT_HASHED_TYPES, KINDS, ResourceChange, StackDiff

BLOCKED = "WILL BE BLOCKED by the stack policy"
MAY_BE_BLOCKED = "WILL BE BLOCKED by the stack policy if CloudFormation replaces it"


def md(text: str, limit: int = 120) -> str:
    """Inline code for Markdown, shortened; backticks cannot appear inside."""
    text = text.replace("`", "'").replace("\n", " ")
    return f"`{text if len(text) <= limit else text[: limit - 1] + '…'}`"


def _label(change: ResourceChange) -> str:
    where = f", {change.path}" if change.path else ""
    return f"{md(change.logical_id)} ({change.type}{where})"


def render_markdown(diff: StackDiff, extra_sections: Sequence[str] = ()) -> str:
    """The summary. `extra_sections` are Markdown sections (each with its own `#### ` heading) that other
    checks contribute; they come after the alarms, before the lists of added and modified resources."""
    lines = [f"### `{diff.stack}`", ""]
    lines += [f"> {note}" for note in diff.notes] + ([""] if diff.notes else [])
    if not diff.has_changes:
        lines += ["No changes.", ""]
        return "\n".join(lines)
    counts = {kind: len(diff.of_kind(kind)) for kind in KINDS}
    if not counts["may be replaced"]:
        del counts["may be replaced"]  # the usual case: keep the summary line short
    lines += [" · ".join(f"**{n}** {kind}" for kind, n in counts.items()), ""]

    certain = [c for c in diff.blocked if c.kind != "may be replaced"]
    maybe = [c for c in diff.blocked if c.kind == "may be replaced"]
    for box, items, verdict in (("CAUTION", certain, BLOCKED), ("WARNING", maybe, MAY_BE_BLOCKED)):
        if items:
            lines += [
                f"> [!{box}]",
                f"> **{len(items)} change(s) {verdict}**: CloudFormation will refuse the update and "
                "roll back the whole deploy.",
                ">",
            ]
            lines += [f"> - {_label(c)}: {c.kind} ({c.blocked_by} denied)" for c in items]
            lines.append("")
    if not diff.blocked and not diff.policy_given:
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
                f"| {v.label} ({md(v.function_id)}) | {'yes' if is_version else 'no'} | {canary} | "
                f"{'; '.join(v.reasons) or '—'} |"
            )
        lines.append("")

    for kind in ("replaced", "may be replaced", "removed"):
        items = [c for c in diff.of_kind(kind) if c.type not in CONTENT_HASHED_TYPES or c.blocked_by]
        if not items:
            continue
        lines += [f"#### {kind.capitalize()}", ""]
        for c in items:
            text = f"- {_label(c)}"
            if c.reasons:
                text += f": {'; '.join(c.reasons)}"
            if c.looks_like:
                text += f" (looks renamed to {md(c.looks_like)}: CloudFormation deletes this one)"
            if c.blocked_by:
                verdict = MAY_BE_BLOCKED if kind == "may be replaced" else BLOCKED
                text += f" — **{verdict}** ({c.blocked_by} denied)"
            lines.append(text)
        lines.append("")

    for title, findings in (
        ("IAM broadening", diff.iam),
        ("Security-group broadening", diff.security_groups),
    ):
        if findings:
            lines += [f"#### {title}", ""]
            lines += [
                f"- {'⚠️ ' if f.severe else ''}{md(f.logical_id)} ({f.type}): {f.message}" for f in findings
            ]
            lines.append("")

    if diff.alarms:
        lines += ["#### Alarms", ""]
        for a in diff.alarms:
            lines.append(f"- {a.kind}: {md(a.logical_id)} “{a.name}”: {'; '.join(a.details)}")
        lines.append("")
    lines += [line for section in extra_sections for line in (section.strip(), "")]

    added = diff.of_kind("added")
    listed = [c for c in added if c.type not in CONTENT_HASHED_TYPES]
    lines += _section(
        "Added",
        [_label(c) + (f" (looks renamed from {md(c.looks_like)})" if c.looks_like else "") for c in listed],
    )
    lines += _section(
        "Modified (in place)",
        [
            f"{_label(c)}: {', '.join(c.changed)}" + (f" — **{BLOCKED}**" if c.blocked_by else "")
            for c in diff.of_kind("modified")
        ],
    )
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


def _section(title: str, items: Sequence[str]) -> list[str]:
    """A level-4 heading, one bullet per item and a blank line; nothing when there are no items."""
    return [f"#### {title}", "", *(f"- {item}" for item in items), ""] if items else []
