"""The on-call runbook must follow the code. It is two files: docs/runbook.md (Start here and one section
per alarm, where every alarm description's link lands) and docs/runbook-procedures.md (deploy, migrations,
rollbacks, out-of-band change alerts with the drift-check alarms, escalation). These tests fail when
either drifts:

1. every alarm the catalogue builds has a section in docs/runbook.md whose GitHub anchor is exactly the
   one its description links to (`describe()` output, not a hard-coded list), with the right "rolls back"
   and "pages" facts; the drift-check alarms and the general sections have sections in one of the files;
2. every `docs/runbook.md#…` / `docs/runbook-procedures.md#…` / `docs/guardrails.md#…` reference in the
   code resolves to a heading of that file;
3. every `make <target>` in the runbook's code is a Makefile target (and `ENV=` a real environment);
4. every relative Markdown link in either runbook file points to an existing file (and heading, with a
   fragment), so the links between the two files resolve; so do links to them from the other documents;

plus the per-environment deploy table, the hook check names, and (synth) every `res TYPE PREFIX` lookup
and every alarm description's runbook link in the synthesized templates.

Anchors follow GitHub's rule (github-slugger): heading text lower-cased, every character that is not a
letter, digit, space, '-' or '_' dropped, spaces turned into '-', repeats suffixed -1, -2...
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stacks.config import AlarmThresholds, CustomCanary, EnvironmentConfig, parse_environments
from stacks.constructs.alarm_catalogue import RUNBOOK_URL
from stacks.constructs.alarms import CATALOGUE, SPECS, AlarmSpec, describe

REPO_ROOT = Path(__file__).resolve().parents[1]
RUNBOOK = REPO_ROOT / "docs" / "runbook.md"
PROCEDURES = REPO_ROOT / "docs" / "runbook-procedures.md"
RUNBOOK_FILES = (RUNBOOK, PROCEDURES)
GUARDRAILS_DOC = REPO_ROOT / "docs" / "guardrails.md"
MAKEFILE = REPO_ROOT / "Makefile"
GUARDRAILS_PY = REPO_ROOT / "stacks" / "constructs" / "guardrails.py"
HOOKS = REPO_ROOT / "lambda_src" / "hooks"
# The hooks' shared core: hook_calls, hook_report, hook_target, hook_checks.
CORE_MODULES = tuple(p.name for p in sorted(HOOKS.glob("hook_*.py")))
# Where code may point on-call at a document section (the brief: stacks/ and lambda_src/; the rest is cheap).
REFERENCE_ROOTS = ("stacks", "lambda_src", "scripts", "app.py", "README.md", "docs", ".github")
DOC_REFERENCE = re.compile(r"docs/(runbook-procedures|runbook|guardrails)\.md#([A-Za-z0-9_-]+)")
REQUIRED_SECTIONS = (
    "Deploy",
    "Migrations",
    "Read a rollback",
    "Stop a deployment",
    "Roll back by hand the right way",
    "Out-of-band change alerts",
)


# ---------------------------------------------------------------------------------------------------------
# Markdown: headings, GitHub anchors, code and links


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_INLINE_CODE = re.compile(r"(`+)(.+?)\1")


def github_slug(text: str) -> str:
    """GitHub's heading anchor for rendered heading text (github-slugger, without the duplicate suffix)."""
    kept = "".join(ch for ch in text.strip().lower() if ch.isalnum() or ch in " -_")
    return kept.replace(" ", "-")


def rendered(raw: str) -> str:
    """Heading source to the text GitHub slugs: links and images to their text, no code ticks, emphasis
    stars or inline HTML."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", raw)
    text = re.sub(r"<[^>]+>", "", text)
    return text.replace("`", "").replace("*", "")


def split_fences(markdown: str) -> Iterator[tuple[bool, str]]:
    """(inside a fenced code block, line) for every line; the fence lines themselves count as inside."""
    fence: str | None = None
    for line in markdown.splitlines():
        match = _FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
            yield True, line
        elif fence is not None:
            closing = match.group(1) if match else ""
            # A closing fence: the opening character, at least as long, nothing after it.
            if closing[:1] == fence[0] and len(closing) >= len(fence) and line.strip() == closing:
                fence = None
            yield True, line
        else:
            yield False, line


@dataclass(frozen=True)
class Section:
    level: int
    text: str
    anchor: str
    body: str  # up to the next heading of the same or a higher level


def sections(markdown: str) -> list[Section]:
    """ATX headings outside code blocks, with GitHub's anchors (duplicates get -1, -2...)."""
    found: list[tuple[int, str, int]] = []  # level, text, line index
    lines = list(split_fences(markdown))
    for index, (in_code, line) in enumerate(lines):
        match = None if in_code else _ATX.match(line)
        if match:
            found.append((len(match.group(1)), rendered(match.group(2) or "").strip(), index))
    occurrences: dict[str, int] = {}
    out = []
    for position, (level, text, index) in enumerate(found):
        base = slug = github_slug(text)
        while slug in occurrences:
            occurrences[base] += 1
            slug = f"{base}-{occurrences[base]}"
        occurrences[slug] = 0
        end = next((i for lv, _, i in found[position + 1 :] if lv <= level), len(lines))
        body = "\n".join(line for _, line in lines[index + 1 : end])
        out.append(Section(level, text, slug, body))
    return out


def anchors(path: Path) -> set[str]:
    return {s.anchor for s in sections(path.read_text())}


def runbook_text() -> str:
    """Both runbook files, one after the other (for what may live in either: commands, make calls)."""
    return "\n".join(path.read_text() for path in RUNBOOK_FILES)


def runbook_section(anchor: str) -> Section:
    """The section with this anchor in whichever runbook file holds it (exactly one must)."""
    found = [(path, s) for path in RUNBOOK_FILES for s in sections(path.read_text()) if s.anchor == anchor]
    assert len(found) == 1, (
        f"#{anchor} must be a heading in exactly one of docs/runbook.md and docs/runbook-procedures.md; "
        f"found in {[path.name for path, _ in found] or 'neither'}"
    )
    return found[0][1]


def code_text(markdown: str) -> str:
    """Everything a reader would paste: fenced blocks and inline code spans, one snippet per line."""
    out = []
    for in_code, line in split_fences(markdown):
        if in_code:
            out.append(line)
        else:
            out += [m.group(2) for m in _INLINE_CODE.finditer(line)]
    return "\n".join(out)


def prose(markdown: str) -> str:
    """The Markdown outside code: fenced blocks dropped, inline code spans blanked."""
    return "\n".join(_INLINE_CODE.sub("``", line) for in_code, line in split_fences(markdown) if not in_code)


def link_targets(markdown: str) -> list[str]:
    text = prose(markdown)
    inline = re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", text)
    reference = re.findall(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", text, flags=re.M)
    return inline + reference


def test_github_slug_rule() -> None:
    doc = (
        "# Title\n## ErrorRate\n### An out-of-band change alert fired\n"
        "## 5. Never through the back door: hotswap, `cdk watch`, `sam sync`\n"
        "## Read a rollback\n## Read a rollback\n## Read a rollback-1\n"
        "```sh\n# not a heading\n```\n## [Linked](x.md) *text* ##\n## snake_case & co.\n"
    )
    assert [s.anchor for s in sections(doc)] == [
        "title",
        "errorrate",
        "an-out-of-band-change-alert-fired",
        "5-never-through-the-back-door-hotswap-cdk-watch-sam-sync",
        "read-a-rollback",
        "read-a-rollback-1",
        "read-a-rollback-1-1",
        "linked-text",
        "snake_case--co",
    ]


# ---------------------------------------------------------------------------------------------------------
# 1. One section per alarm, at the anchor its description links to


def alarm_anchor(spec: AlarmSpec) -> str:
    """The fragment of the runbook link in the description the constructs give this alarm."""
    fields = {
        re.split(r"[.\[]", name)[0] for _, name, _, _ in string.Formatter().parse(spec.first_command) if name
    }
    text = describe(
        spec,
        subject="Function",
        thresholds=AlarmThresholds(),
        runbook_url=RUNBOOK_URL,
        names={name: f"<{name}>" for name in fields},
    )
    link = text.rsplit("Runbook: ", 1)[-1]
    assert link.startswith(f"{RUNBOOK_URL}#"), f"{spec.key}: description ends with {link!r}"
    return link.split("#", 1)[1]


def test_runbook_url_is_this_file() -> None:
    prefix = "https://github.com/credentialmate/credmate-lambda/blob/main/"
    assert RUNBOOK_URL.startswith(prefix), RUNBOOK_URL
    assert (REPO_ROOT / RUNBOOK_URL.removeprefix(prefix)).resolve() == RUNBOOK.resolve()


@pytest.mark.parametrize("spec", CATALOGUE, ids=[s.key for s in CATALOGUE])
def test_every_alarm_has_a_section_at_its_anchor(spec: AlarmSpec) -> None:
    anchor = alarm_anchor(spec)
    assert anchor == spec.key.lower()
    by_anchor = {s.anchor: s for s in sections(RUNBOOK.read_text())}
    assert anchor in by_anchor, (
        f"alarm {spec.key} links to docs/runbook.md#{anchor}, but no heading there has that anchor: "
        f"add a heading `### {spec.key}` (its text exactly the key)"
    )
    assert by_anchor[anchor].text == spec.key, (
        f"the heading for #{anchor} reads {by_anchor[anchor].text!r}; keep it exactly {spec.key!r} and put "
        "the human title on the first line under it"
    )


def _fact(body: str, label: str) -> str | None:
    match = re.search(rf"\*\*{label}:\*\*\s*(yes|no)\b", body, flags=re.I)
    return match.group(1).lower() if match else None


def _pages(spec: AlarmSpec) -> bool:
    return spec.audience == "page" or spec.in_composite


@pytest.mark.parametrize("spec", CATALOGUE, ids=[s.key for s in CATALOGUE])
def test_alarm_section_states_rollback_and_paging_as_the_code_does(spec: AlarmSpec) -> None:
    section = next(s for s in sections(RUNBOOK.read_text()) if s.anchor == spec.key.lower())
    rolls_back, pages = _fact(section.body, "Rolls back a deploy"), _fact(section.body, "Pages")
    assert rolls_back == ("yes" if spec.rolls_back else "no"), (
        f"### {spec.key}: needs '**Rolls back a deploy:** {'yes' if spec.rolls_back else 'no'}' "
        f"(AlarmSpec.rolls_back={spec.rolls_back}), found {rolls_back!r}"
    )
    assert pages == ("yes" if _pages(spec) else "no"), (
        f"### {spec.key}: needs '**Pages:** {'yes' if _pages(spec) else 'no'}' (audience={spec.audience}, "
        f"in_composite={spec.in_composite}), found {pages!r}"
    )


def test_alarm_index_table_matches_the_catalogue() -> None:
    rows = {}
    for line in prose(RUNBOOK.read_text()).splitlines():
        match = re.match(r"^\| \[(\w+)\]\(#[\w-]+\)[^|]*\|\s*([^|]*?)\s*\|\s*(yes|no)\s*\|$", line)
        if match:
            rows[match.group(1)] = (match.group(2), match.group(3))
    missing = [spec.key for spec in CATALOGUE if spec.key not in rows]
    assert not missing, f"the alarm index table at the top of docs/runbook.md lacks {missing}"
    for spec in CATALOGUE:
        pages, rolls_back = rows[spec.key]
        assert rolls_back == ("yes" if spec.rolls_back else "no"), f"index row {spec.key}: rolls back"
        assert (pages != "no") == _pages(spec), f"index row {spec.key}: pages column is {pages!r}"


def guardrail_alarm_names() -> list[str]:
    """The drift check's alarm names (`alarm("StackDrift", …)`, `alarm(f"{t.label}CodeDrift", …)`)."""
    source = GUARDRAILS_PY.read_text()
    return sorted(set(re.findall(r"\balarm\(\s*f?\"(?:\{t\.label\})?([A-Za-z]+)\"", source)))


def test_drift_check_alarms_have_sections() -> None:
    names = guardrail_alarm_names()
    assert names, f"found no alarm(...) calls in {GUARDRAILS_PY}: update guardrail_alarm_names()"
    for name in names:
        assert runbook_section(name.lower()).text == name, f"the drift-check alarm's heading must read {name}"


@pytest.mark.parametrize("title", REQUIRED_SECTIONS)
def test_general_sections_exist(title: str) -> None:
    assert runbook_section(github_slug(title)).level == 2, f"'{title}' must be a `## {title}` section"


def test_start_here_stays_with_the_alarm_sections() -> None:
    """Every alarm section relies on the shell Start here sets up; alarm links land in docs/runbook.md."""
    assert "start-here" in anchors(RUNBOOK), "docs/runbook.md lacks '## Start here'"
    assert "triage-in-two-minutes" in anchors(RUNBOOK), "docs/runbook.md lacks '### Triage in two minutes'"


# ---------------------------------------------------------------------------------------------------------
# 2. Section references in the code resolve


def reference_files() -> Iterator[Path]:
    for root in REFERENCE_ROOTS:
        path = REPO_ROOT / root
        candidates: Iterable[Path] = [path] if path.is_file() else sorted(path.rglob("*"))
        for candidate in candidates:
            wanted = candidate.suffix in (".py", ".md", ".yml", ".yaml", ".json", ".txt")
            if wanted and candidate.is_file() and "__pycache__" not in candidate.parts:
                yield candidate


def test_document_anchors_referenced_in_code_exist() -> None:
    targets = {"runbook": RUNBOOK, "runbook-procedures": PROCEDURES, "guardrails": GUARDRAILS_DOC}
    known = {name: anchors(path) for name, path in targets.items()}
    refs = [
        (path.relative_to(REPO_ROOT), match.group(1), match.group(2))
        for path in reference_files()
        for match in DOC_REFERENCE.finditer(path.read_text(errors="replace"))
    ]
    assert any(str(where).startswith(("stacks", "lambda_src")) for where, _, _ in refs), (
        "found no docs/*.md#anchor reference under stacks/ or lambda_src/ (the out-of-band alert has one): "
        "is DOC_REFERENCE still right?"
    )
    broken = [f"{where}: docs/{doc}.md#{anchor}" for where, doc, anchor in refs if anchor not in known[doc]]
    assert not broken, "references to headings that do not exist:\n" + "\n".join(broken)


# ---------------------------------------------------------------------------------------------------------
# 3. `make` targets and environments


def makefile_targets() -> set[str]:
    targets: set[str] = set()
    for line in MAKEFILE.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_][A-Za-z0-9_.\- ]*?)\s*::?(?!=)", line)
        if match:
            targets.update(match.group(1).split())
    return targets


@dataclass(frozen=True)
class MakeCall:
    line: str
    targets: tuple[str, ...]
    assignments: tuple[tuple[str, str], ...]


def make_calls(markdown: str) -> list[MakeCall]:
    calls = []
    for line in code_text(markdown).splitlines():
        line = re.sub(r"\s#.*$", "", line)
        for match in re.finditer(r"(?:^|(?<=[\s;&|(]))make(?=\s)", line):
            words = re.split(r"&&|\|\||[;|)]", line[match.end() :], maxsplit=1)[0].split()
            assignments = tuple(
                (w.split("=", 1)[0], w.split("=", 1)[1]) for w in words if "=" in w and not w.startswith("-")
            )
            targets = tuple(w for w in words if "=" not in w and not w.startswith("-"))
            calls.append(MakeCall(line.strip(), targets, assignments))
    return calls


def environments() -> dict[str, EnvironmentConfig]:
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    return parse_environments(context["environments"])


def test_make_targets_in_the_runbook_exist() -> None:
    calls = make_calls(runbook_text())
    real = makefile_targets()
    assert {"deploy", "wait-deployments"} <= real, f"Makefile targets parsed as {sorted(real)}"
    mentioned = {t for call in calls for t in call.targets}
    assert {"deploy", "wait-deployments"} <= mentioned, "the runbook must show make deploy / wait-deployments"
    unknown = [f"{call.line!r}: {t}" for call in calls for t in call.targets if t not in real]
    assert not unknown, f"make targets not in the Makefile ({sorted(real)}):\n" + "\n".join(unknown)


def test_make_environments_in_the_runbook_exist() -> None:
    envs = set(environments())
    bad = [
        f"{call.line!r}: ENV={value}"
        for call in make_calls(runbook_text())
        for name, value in call.assignments
        if name == "ENV" and value not in envs and not re.fullmatch(r"<[^>]+>|\$\{?\w+\}?", value)
    ]
    assert not bad, f"ENV= values that are not environments in cdk.json ({sorted(envs)}):\n" + "\n".join(bad)


# ---------------------------------------------------------------------------------------------------------
# 4. Links


def broken_links(document: Path, targets: Iterable[str]) -> list[str]:
    """The relative link targets in `document` whose file does not exist or has no heading `#fragment`."""
    broken = []
    for target in targets:
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.I):  # https:, mailto:...
            continue
        path_part, _, fragment = target.partition("#")
        path = (document.parent / path_part).resolve() if path_part else document
        if not path.exists():
            broken.append(f"{target}: {path} does not exist")
        elif fragment and path.suffix == ".md" and fragment not in anchors(path):
            broken.append(f"{target}: {path.name} has no heading with anchor #{fragment}")
    return broken


@pytest.mark.parametrize("document", RUNBOOK_FILES, ids=[p.name for p in RUNBOOK_FILES])
def test_relative_links_resolve(document: Path) -> None:
    targets = link_targets(document.read_text())
    assert targets, f"no links found in docs/{document.name}: is link_targets() still right?"
    broken = broken_links(document, targets)
    assert not broken, f"broken links in docs/{document.name}:\n" + "\n".join(broken)


def test_the_two_runbook_files_link_to_each_other() -> None:
    """On-call moves between the alarm sections and the procedures: both directions must have links (and
    test_relative_links_resolve checks they land on a heading)."""
    for document, other in ((RUNBOOK, PROCEDURES), (PROCEDURES, RUNBOOK)):
        to_other = [t for t in link_targets(document.read_text()) if t.partition("#")[0] == other.name]
        assert any("#" in t for t in to_other), f"docs/{document.name} links to no section of {other.name}"


def test_links_to_the_runbook_from_other_documents_resolve() -> None:
    """Markdown links from README.md and docs/*.md into either runbook file land on a heading."""
    documents = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]
    names = {p.resolve() for p in RUNBOOK_FILES}
    broken = []
    for document in documents:
        if document.resolve() in names:
            continue
        into_runbook = [
            t
            for t in link_targets(document.read_text())
            if t.partition("#")[0] and (document.parent / t.partition("#")[0]).resolve() in names
        ]
        broken += [f"{document.relative_to(REPO_ROOT)}: {b}" for b in broken_links(document, into_runbook)]
    assert not broken, "links into the runbook that do not resolve:\n" + "\n".join(broken)


# ---------------------------------------------------------------------------------------------------------
# The per-environment deploy facts and the hook checks


def traffic_shift_text(config: str | CustomCanary) -> str:
    if isinstance(config, CustomCanary):
        return f"`{config.kind} {config.percent}% every {config.interval_minutes} min`"
    return f"`{config}`"


@pytest.mark.parametrize("env", sorted(environments()))
def test_deploy_table_matches_cdk_json(env: str) -> None:
    config = environments()[env]
    deploy = runbook_section("deploy")
    rows = [line for line in deploy.body.splitlines() if line.startswith(f"| `{env}` |")]
    assert len(rows) == 1, f"## Deploy needs one table row starting '| `{env}` |'"
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    expected = [
        f"`{env}`",
        traffic_shift_text(config.deployment.config),
        f"`{config.deployment.schema_mismatch}`",
        f"{config.guardrails.drift_check_minutes} min",
    ]
    assert cells == expected, f"## Deploy row for {env} is {cells}; cdk.json says {expected}"


def hook_check_names(*files: str) -> set[str]:
    pattern = re.compile(r"(?:CheckResult|\.emit)\(\s*\"(\w+)\"")
    return {name for f in files for name in pattern.findall((HOOKS / f).read_text())}


def test_rollback_table_names_the_real_hook_checks() -> None:
    core = hook_check_names(*CORE_MODULES)
    by_hook = {
        "pre_traffic": hook_check_names("pre_traffic.py") | core,
        "post_traffic": hook_check_names("post_traffic.py") | core,
    }
    assert by_hook["pre_traffic"] - core and by_hook["post_traffic"] - core, "no hook checks found"
    rollback = runbook_section("read-a-rollback")
    rows = [
        (m.group(1), m.group(2))
        for m in re.finditer(r"^\| (pre_traffic|post_traffic|both) \| `(\w+)` \|", rollback.body, flags=re.M)
    ]
    assert rows, "## Read a rollback needs its table of hook checks ('| pre_traffic | `probe` | ...')"
    wrong = [
        f"{hook}: {check}"
        for hook, check in rows
        if not all(check in by_hook[h] for h in (by_hook if hook == "both" else [hook]))
    ]
    assert not wrong, f"checks in the table that the hooks do not have: {wrong}"
    for hook, names in by_hook.items():
        listed = {check for h, check in rows if h in (hook, "both")}
        assert names <= listed, f"{hook} checks missing from the table: {sorted(names - listed)}"


# ---------------------------------------------------------------------------------------------------------
# Synthesized templates: the runbook's lookups find one resource each; every description link resolves


def _template(synthesized: dict[str, Any], env: str) -> dict[str, Any]:
    path = Path(synthesized["outdir"]) / f"credmate-backend-{env}.template.json"
    template: dict[str, Any] = json.loads(path.read_text())
    return template


@pytest.mark.synth
@pytest.mark.parametrize("env", sorted(environments()))
def test_resource_lookups_find_exactly_one_resource(synthesized: dict[str, Any], env: str) -> None:
    template = _template(synthesized, env)
    code = code_text(runbook_text())
    lookups = sorted(set(re.findall(r"\bres\s+(AWS::\w+::\w+)\s+(\w+)", code)))
    assert len(lookups) >= 10, f"found only {lookups}: is the regex still right?"
    wrong = []
    for type_, prefix in lookups:
        hits = [k for k, v in template["Resources"].items() if v["Type"] == type_ and k.startswith(prefix)]
        if len(hits) != 1:
            wrong.append(f"res {type_} {prefix}: {hits or 'nothing'}")
    for prefix in re.findall(r"starts_with\(OutputKey, '(\w+)'\)", code):
        hits = [k for k in template.get("Outputs", {}) if k.startswith(prefix)]
        if len(hits) != 1:
            wrong.append(f"output {prefix}: {hits or 'nothing'}")
    labels = {g.label for g in synthesized["stacks"][env].functions}
    picks = re.findall(r"^\s*pick (\w+)", code, flags=re.M)  # commands, not comments
    assert picks, "no `pick <Function>` commands found: is the regex still right?"
    wrong += [f"pick {label}: not a function" for label in picks if label not in labels]
    assert not wrong, f"runbook lookups that do not match credmate-backend-{env}:\n" + "\n".join(wrong)


@pytest.mark.synth
@pytest.mark.parametrize("env", sorted(environments()))
def test_every_synthesized_alarm_link_resolves(synthesized: dict[str, Any], env: str) -> None:
    template = _template(synthesized, env)
    known = anchors(RUNBOOK)
    links = {
        logical_id: re.findall(r"docs/runbook\.md#([\w-]+)", json.dumps(resource["Properties"]))
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] in ("AWS::CloudWatch::Alarm", "AWS::CloudWatch::CompositeAlarm")
    }
    linked = {k: v for k, v in links.items() if v}
    assert {a for v in linked.values() for a in v} == {s.key.lower() for s in SPECS.values()}, (
        "the synthesized alarms link to a different set of runbook anchors than the catalogue"
    )
    broken = [f"{k}: #{a}" for k, anchors_ in linked.items() for a in anchors_ if a not in known]
    assert not broken, "alarm descriptions linking to missing runbook headings:\n" + "\n".join(broken)


@pytest.mark.synth
@pytest.mark.parametrize("env", sorted(environments()))
def test_every_document_link_in_the_template_resolves(synthesized: dict[str, Any], env: str) -> None:
    """Any `docs/<doc>.md#anchor` a template carries (alarm descriptions, dashboard text, hook settings)."""
    documents = {"runbook": RUNBOOK, "runbook-procedures": PROCEDURES, "guardrails": GUARDRAILS_DOC}
    refs = set(DOC_REFERENCE.findall(json.dumps(_template(synthesized, env))))
    assert refs, "no docs/*.md#anchor in the template: is DOC_REFERENCE still right?"
    broken = sorted(f"docs/{doc}.md#{a}" for doc, a in refs if a not in anchors(documents[doc]))
    assert not broken, "template links to missing headings:\n" + "\n".join(broken)


def test_migrations_section_explains_every_status_the_runner_logs() -> None:
    runner = REPO_ROOT / "lambda_src" / "migrate" / "credmate_migrate.py"
    pattern = r'"migration":\s*"([\w-]+)"(?: if [^\n]+? else "([\w-]+)")?'
    statuses = {name for pair in re.findall(pattern, runner.read_text()) for name in pair if name}
    assert {"upgraded", "up-to-date", "refused", "failed"} <= statuses, f"statuses parsed as {statuses}"
    section = runbook_section("migrations")
    rows = set(re.findall(r"^\| `([\w-]+)` \|", section.body, flags=re.M))
    assert statuses <= rows, f"## Migrations lacks a row for {sorted(statuses - rows)}"
    assert "alembic upgrade` by hand" in section.body
    assert "expand/contract" in section.body.lower()
