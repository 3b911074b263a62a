#!/usr/bin/env python3
"""Draw one synthesized stack as a self-contained SVG: request path, deploy path, alarms and on-call.

    python -m scripts.diagram --out docs/architecture.svg          # what `make diagram` runs
    python -m scripts.diagram --check                              # exit 1 if docs/architecture.svg is stale
    python -m scripts.diagram --tree other/tree.json --stack credmate-backend-staging --out /tmp/s.svg

The input is the construct tree `cdk synth` writes (cdk.out/tree.json). No construct name is hard-coded:
resources are classified by their CloudFormation type (stacks by their construct fqn), boxes are labelled with
construct paths (never hashed logical IDs), and arrows come from references in the synthesized properties
(`Ref`, `Fn::GetAtt`, `Fn::Sub`) between resources of the stack; the one exception, which function a
deployment group deploys, is explained at _deployments. What the tree lacks is not drawn. Relative paths
resolve from the repository root, not from the working directory.

Exit codes: 0 written / up to date, 1 --check found the file stale, 2 missing or invalid tree, unknown stack.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TREE = Path("cdk.out/tree.json")
DEFAULT_OUT = Path("docs/architecture.svg")
DEFAULT_STACK = "credmate-backend-prod"

CFN_TYPE = "aws:cdk:cloudformation:type"
CFN_ID = "aws:cdk:cloudformation:logicalId"
CFN_PROPS = "aws:cdk:cloudformation:props"
# jsii reports the nearest library type, so a Python subclass of Stack still shows this fqn.
STACK_FQNS = frozenset({"aws-cdk-lib.Stack", "@aws-cdk/core.Stack"})

LAMBDA = "AWS::Lambda::Function"
ALIAS = "AWS::Lambda::Alias"
VERSION = "AWS::Lambda::Version"
RULE = "AWS::Events::Rule"
TOPIC = "AWS::SNS::Topic"
QUEUE = "AWS::SQS::Queue"
ALARM = "AWS::CloudWatch::Alarm"
COMPOSITE = "AWS::CloudWatch::CompositeAlarm"
DEPLOYMENT_GROUP = "AWS::CodeDeploy::DeploymentGroup"
ROLE = "AWS::IAM::Role"
POLICIES = ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
API_KINDS = {
    "AWS::ApiGateway::RestApi": "API Gateway REST API",
    "AWS::ApiGatewayV2::Api": "API Gateway HTTP API",
}
# An API reaches a function through these; their `restApiId` / `apiId` names the API.
API_INTEGRATIONS = frozenset({"AWS::ApiGateway::Method", "AWS::ApiGatewayV2::Integration"})
DOMAINS = frozenset({"AWS::ApiGateway::DomainName", "AWS::ApiGatewayV2::DomainName"})
DOMAIN_MAPPINGS = frozenset({"AWS::ApiGateway::BasePathMapping", "AWS::ApiGatewayV2::ApiMapping"})
# What event-source mappings read from: (source kind, label).
STREAM_KINDS = {
    QUEUE: ("queue", "SQS queue"),
    "AWS::Kinesis::Stream": ("stream", "Kinesis stream"),
    "AWS::DynamoDB::Table": ("stream", "DynamoDB stream"),
}
ALARM_ACTIONS = ("alarmActions", "okActions", "insufficientDataActions")


class DiagramError(Exception):
    """The tree cannot be drawn: missing or invalid file, or no such stack. main() exits 2 with it."""


# ---------------------------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Function:
    """An application function: a Lambda function that has an alias (traffic goes to the alias)."""

    key: str  # construct path of the function inside the stack, e.g. "Worker/Function"
    name: str  # the construct holding both function and alias, e.g. "Worker"
    alias: str  # the alias's name, e.g. "live"
    runtime: str
    memory_mb: int | None
    alias_id: str  # the alias's logical ID (what references to it name; never drawn)


@dataclass(frozen=True)
class Source:
    """Something in front of a function: an API, a queue or stream, a rule, a custom domain, a DLQ."""

    key: str
    kind: str  # "domain" | "api" | "queue" | "stream" | "dead-letter queue" | "schedule" | "event rule"
    detail: str  # e.g. "SQS queue", "EventBridge rate(1 hour)", the domain name


@dataclass(frozen=True)
class Hook:
    key: str
    name: str  # path relative to the deployment group's owner construct, e.g. "PreTrafficHook"
    stage: str  # "pre-traffic" | "post-traffic" | "hook"


@dataclass(frozen=True)
class Deployment:
    """A CodeDeploy deployment group, its hooks, and the function whose alias it shifts (None: unknown)."""

    key: str
    function: str | None
    config: str
    hooks: tuple[Hook, ...]


@dataclass(frozen=True)
class AlarmGroup:
    """The alarms one construct owns, e.g. every alarm under "BackendApiAlarms"."""

    key: str
    alarms: int
    composites: int
    composite_inputs: int  # alarms the composites combine
    subject: str | None  # key of the function or check most of its alarms watch (None: none of them)
    topics: tuple[str, ...]

    @property
    def label(self) -> str:
        parts = [_plural(self.alarms, "alarm")] if self.alarms else []
        if self.composites:
            parts.append(_plural(self.composites, "composite alarm"))
        return f"{self.key}: {', '.join(parts)}"


@dataclass(frozen=True)
class Topic:
    key: str
    subscribers: tuple[str, ...]  # protocols, e.g. ("email", "Slack")


@dataclass(frozen=True)
class Check:
    """A scheduled function that is not an application function or hook, e.g. a drift or health check."""

    key: str
    watches: tuple[str, ...]  # names of the functions and sources its properties refer to


@dataclass(frozen=True)
class Watcher:
    """An event-pattern rule whose target is a topic, e.g. an alert on out-of-band changes."""

    key: str
    sources: tuple[str, ...]  # the pattern's event sources, e.g. ("aws.lambda",)
    watches: tuple[str, ...]
    topics: tuple[str, ...]


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: str  # "invokes" | "routes" | "redrive" | "deploys" | "rollback" | "notifies"
    label: str = ""


@dataclass(frozen=True)
class Model:
    """What one stack's picture shows. Tuples are in drawing order; functions request path first."""

    stack: str
    functions: tuple[Function, ...]
    checks: tuple[Check, ...]
    sources: tuple[Source, ...]
    deployments: tuple[Deployment, ...]
    alarm_groups: tuple[AlarmGroup, ...]
    topics: tuple[Topic, ...]
    watchers: tuple[Watcher, ...]
    edges: tuple[Edge, ...]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# ------------------------------------------------------------------------------------------- tree reading


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


# --------------------------------------------------------------------------------------------- model build


def build_model(tree: Mapping[str, Any], stack: str) -> Model:
    """The picture's content for `stack` from a parsed tree.json; DiagramError for an unknown stack."""
    stacks = find_stacks(tree)
    if stack not in stacks:
        names = ", ".join(sorted(stacks)) or "none"
        raise DiagramError(f"stack '{stack}' is not in the tree; stacks found: {names}")
    ix = Index(index_resources(stacks[stack]))
    functions, fn_ids = _functions(ix)
    sources, source_edges = _sources(ix, fn_ids, functions)
    functions = _request_path_first(functions, sources, source_edges)
    deployments, deploy_edges, hook_ids = _deployments(ix, functions, fn_ids, sources, source_edges)
    checks, check_ids = _checks(ix, set(fn_ids) | hook_ids, functions, fn_ids, sources)
    check_sources, check_edges = _check_schedules(ix, check_ids)
    members = _members(ix, functions, fn_ids, checks, sources + check_sources, source_edges + check_edges)
    groups, alarm_edges = _alarm_groups(ix, members)
    watchers, watcher_edges = _watchers(ix, functions, fn_ids, sources)
    return Model(
        stack=stack,
        functions=functions,
        checks=checks,
        sources=sources + check_sources,
        deployments=deployments,
        alarm_groups=groups,
        topics=_topics(ix),
        watchers=watchers,
        edges=source_edges + check_edges + deploy_edges + alarm_edges + watcher_edges,
    )


def _functions(ix: Index) -> tuple[tuple[Function, ...], dict[str, str]]:
    """Functions with an alias, and a map from the logical IDs that stand for them (function, alias,
    versions) to the function's key."""
    functions: dict[str, Function] = {}
    ids: dict[str, str] = {}
    for alias in ix.of_type(ALIAS):
        for fn in ix.refs_of_type(alias, LAMBDA)[:1]:
            name = _common_path(fn.path, alias.path) or fn.path
            functions.setdefault(
                fn.path,
                Function(
                    fn.path,
                    name,
                    str(alias.props.get("name", alias.leaf)),
                    str(fn.props.get("runtime", "")),
                    _int(fn.props.get("memorySize")),
                    alias.logical_id,
                ),
            )
            ids[alias.logical_id] = ids[fn.logical_id] = fn.path
            for version in ix.refs_of_type(alias, VERSION):
                ids[version.logical_id] = fn.path
    return tuple(functions[k] for k in sorted(functions)), ids


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _invoked(refs: Iterable[str], fn_ids: Mapping[str, str], functions: Sequence[Function]) -> list[Edge]:
    """Edges (without a source yet) to the functions `refs` reach; labelled with the alias's name only where
    the reference is to the alias itself, since only then does the traffic follow the alias."""
    alias = {f.key: f.alias for f in functions}
    via_alias = {f.key: f.alias_id for f in functions}
    refs = set(refs)
    targets = sorted({fn_ids[r] for r in refs if r in fn_ids})
    return [Edge("", t, "invokes", alias[t] if via_alias[t] in refs else "") for t in targets]


def _sources(
    ix: Index, fn_ids: Mapping[str, str], functions: Sequence[Function]
) -> tuple[tuple[Source, ...], tuple[Edge, ...]]:
    """APIs, event-source mappings and rules that invoke an application function, plus the custom domains in
    front of those APIs and the dead-letter queues behind those queues."""
    sources: dict[str, Source] = {}
    edges: set[Edge] = set()

    def invoke(source: Source, refs: Iterable[str]) -> None:
        sources.setdefault(source.key, source)
        edges.update(replace(e, source=source.key) for e in _invoked(refs, fn_ids, functions))

    for integration in ix.of_type(*API_INTEGRATIONS):
        for api in ix.refs_of_type(integration, *API_KINDS):
            invoke(Source(api.path, "api", API_KINDS[api.type]), integration.refs)
    for mapping in ix.of_type("AWS::Lambda::EventSourceMapping"):
        for stream in ix.refs_of_type(mapping, *STREAM_KINDS):
            invoke(Source(stream.path, *STREAM_KINDS[stream.type]), mapping.refs)
    for rule in ix.of_type(RULE):
        targets = {r for t in _list(rule.props.get("targets")) for r in _refs(t)}
        if targets & set(fn_ids):
            invoke(_rule_source(rule), targets)
    edges.update(_dead_letters(ix, sources))
    edges.update(_domains(ix, sources))
    return tuple(sources[k] for k in sorted(sources)), tuple(sorted(edges, key=_edge_key))


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _rule_source(rule: Resource) -> Source:
    schedule = rule.props.get("scheduleExpression")
    if isinstance(schedule, str):
        return Source(rule.path, "schedule", f"EventBridge {schedule}")
    return Source(rule.path, "event rule", "EventBridge event pattern")


def _dead_letters(ix: Index, sources: dict[str, Source]) -> Iterator[Edge]:
    for queue in ix.of_type(QUEUE):
        if queue.path not in sources:
            continue
        redrive = queue.props.get("redrivePolicy")
        redrive = redrive if isinstance(redrive, dict) else {}
        for ref in sorted(_refs(redrive.get("deadLetterTargetArn"))):
            dlq = ix.by_id.get(ref)
            if dlq is not None and dlq.type == QUEUE:
                sources.setdefault(dlq.path, Source(dlq.path, "dead-letter queue", "SQS dead-letter queue"))
                receives = _int(redrive.get("maxReceiveCount"))
                yield Edge(
                    queue.path, dlq.path, "redrive", f"after {receives} receives" if receives else "redrive"
                )


def _domains(ix: Index, sources: dict[str, Source]) -> Iterator[Edge]:
    """Every custom domain is drawn; one is joined to an API only where a base path mapping says so."""
    for domain in ix.of_type(*DOMAINS):
        name = domain.props.get("domainName")
        sources[domain.path] = Source(
            domain.path, "domain", name if isinstance(name, str) else "custom domain"
        )
    for mapping in ix.of_type(*DOMAIN_MAPPINGS):
        apis = [a for a in ix.refs_of_type(mapping, *API_KINDS) if a.path in sources]
        for domain in ix.refs_of_type(mapping, *DOMAINS):
            for api in apis:
                path = mapping.props.get("basePath") or mapping.props.get("apiMappingKey")
                yield Edge(domain.path, api.path, "routes", f"/{path}" if isinstance(path, str) else "/")


def _edge_key(edge: Edge) -> tuple[str, str, str, str]:
    return (edge.kind, edge.source, edge.target, edge.label)


def _request_path_first(
    functions: tuple[Function, ...], sources: tuple[Source, ...], edges: tuple[Edge, ...]
) -> tuple[Function, ...]:
    """Functions behind an API first, then those fed by a queue or stream, then by rules, then the rest:
    the picture reads as the request path, then the background work."""
    rank = {"api": 0, "queue": 1, "stream": 1, "schedule": 2, "event rule": 2}
    kind = {s.key: s.kind for s in sources}
    best: dict[str, int] = {}
    for edge in edges:
        if edge.kind == "invokes":
            best[edge.target] = min(best.get(edge.target, 9), rank.get(kind[edge.source], 9))
    return tuple(sorted(functions, key=lambda f: (best.get(f.key, 9), f.name)))


def _deployments(
    ix: Index,
    functions: tuple[Function, ...],
    fn_ids: Mapping[str, str],
    sources: tuple[Source, ...],
    source_edges: tuple[Edge, ...],
) -> tuple[tuple[Deployment, ...], tuple[Edge, ...], set[str]]:
    """CodeDeploy deployment groups. The alias's UpdatePolicy, which really ties a group to a function, is
    not in tree.json, so the function is the one the group's hooks and rollback alarms refer to; failing that,
    the function whose name starts the group's top construct (the `<Name>Canary` convention)."""
    members = _members(ix, functions, fn_ids, (), sources, source_edges)
    deployments: list[Deployment] = []
    edges: list[Edge] = []
    hook_ids: set[str] = set()
    alias_of = {f.key: f.alias for f in functions}
    for group in ix.of_type(DEPLOYMENT_GROUP):
        # The group's service role may invoke its hooks: that role's policy names them (under the group when
        # the group built its role, attached to the role the group was given otherwise).
        roles = {r.logical_id for r in ix.refs_of_type(group, ROLE)}
        policies = [*ix.under(group.path), *(p for p in ix.of_type(*POLICIES) if p.refs & roles)]
        hooks = sorted(
            {h for r in policies for h in ix.refs_of_type(r, LAMBDA) if h.logical_id not in fn_ids},
            key=lambda h: h.path,
        )
        hook_ids.update(h.logical_id for h in hooks)
        rollback = [ix.by_id[a] for a in sorted(_alarm_config_ids(group)) if a in ix.by_id]
        function = _deployed_function(group, [*hooks, *rollback], members, functions)
        deployments.append(Deployment(group.path, function, _config_name(ix, group), _hooks(group, hooks)))
        if function is not None:
            edges.append(Edge(group.path, function, "deploys", f"shifts {alias_of[function]}".strip()))
        per_group = Counter(
            alarm.parent or alarm.path for alarm in rollback if alarm.type in (ALARM, COMPOSITE)
        )
        edges.extend(
            Edge(group.path, g, "rollback", f"rollback on {n}") for g, n in sorted(per_group.items())
        )
    return tuple(deployments), tuple(edges), hook_ids


def _alarm_config_ids(group: Resource) -> set[str]:
    config = group.props.get("alarmConfiguration")
    return set(_refs(config.get("alarms"))) if isinstance(config, dict) else set()


def _deployed_function(
    group: Resource,
    evidence: Sequence[Resource],
    members: Mapping[str, set[str]],
    functions: Sequence[Function],
) -> str | None:
    votes = Counter(key for r in evidence for key, ids in members.items() if r.refs & ids)
    if votes:
        top = max(votes.values())
        winners = sorted(k for k, v in votes.items() if v == top)
        if len(winners) == 1:
            return winners[0]
    owner = group.path.split("/", 1)[0]
    by_prefix = sorted((f for f in functions if owner.startswith(f.name)), key=lambda f: -len(f.name))
    return by_prefix[0].key if by_prefix else None


def _config_name(ix: Index, group: Resource) -> str:
    name = group.props.get("deploymentConfigName")
    if isinstance(name, str):
        return name.removeprefix("CodeDeployDefault.")
    config = ix.by_id.get(next(iter(sorted(_refs(name))), ""))
    return config.path if config is not None else "default deployment config"


# The hook's stage is in the alias's UpdatePolicy, which tree.json lacks: it is read from the hook's
# construct id (PreTrafficHook, post_traffic_hook...); a hook named otherwise is drawn as a plain hook.
HOOK_STAGES = (("pretraffic", "pre-traffic"), ("posttraffic", "post-traffic"))


def _hooks(group: Resource, hooks: Sequence[Resource]) -> tuple[Hook, ...]:
    owner = group.parent
    found = []
    for hook in hooks:
        name = hook.path[len(owner) + 1 :] if owner and hook.under(owner) else hook.path
        token = re.sub(r"[-_]", "", hook.leaf.lower())
        stage = next((label for key, label in HOOK_STAGES if key in token), "hook")
        found.append(Hook(hook.path, name, stage))
    order = {"pre-traffic": 0, "post-traffic": 1, "hook": 2}
    return tuple(sorted(found, key=lambda h: (order[h.stage], h.key)))


def _checks(
    ix: Index,
    taken: set[str],
    functions: Sequence[Function],
    fn_ids: Mapping[str, str],
    sources: Sequence[Source],
) -> tuple[tuple[Check, ...], dict[str, str]]:
    """Scheduled functions that are neither application functions nor hooks."""
    scheduled = {
        ref
        for rule in ix.of_type(RULE)
        if isinstance(rule.props.get("scheduleExpression"), str)
        for target in _list(rule.props.get("targets"))
        for ref in _refs(target)
    }
    checks: list[Check] = []
    ids: dict[str, str] = {}
    for fn in ix.of_type(LAMBDA):
        if fn.logical_id in scheduled and fn.logical_id not in taken:
            ids[fn.logical_id] = fn.path
            checks.append(Check(fn.path, _watched(ix, fn, functions, fn_ids, sources)))
    return tuple(checks), ids


def _watched(
    ix: Index,
    resource: Resource,
    functions: Sequence[Function],
    fn_ids: Mapping[str, str],
    sources: Sequence[Source],
) -> tuple[str, ...]:
    """Names of the application functions and sources a resource's properties refer to."""
    name = {f.key: f.name for f in functions}
    names = {name[fn_ids[ref]] for ref in resource.refs if ref in fn_ids}
    names |= {
        s.key for s in sources for ref in resource.refs if ref in ix.by_id and ix.by_id[ref].under(s.key)
    }
    return tuple(sorted(names))


def _check_schedules(ix: Index, check_ids: Mapping[str, str]) -> tuple[tuple[Source, ...], tuple[Edge, ...]]:
    sources: list[Source] = []
    edges: list[Edge] = []
    for rule in ix.of_type(RULE):
        targets = sorted(
            {check_ids[r] for t in _list(rule.props.get("targets")) for r in _refs(t) if r in check_ids}
        )
        if targets and isinstance(rule.props.get("scheduleExpression"), str):
            sources.append(_rule_source(rule))
            edges.extend(Edge(rule.path, t, "invokes") for t in targets)
    return tuple(sources), tuple(edges)


def _members(
    ix: Index,
    functions: Sequence[Function],
    fn_ids: Mapping[str, str],
    checks: Sequence[Check],
    sources: Sequence[Source],
    edges: Sequence[Edge],
) -> dict[str, set[str]]:
    """Logical IDs that belong to each function's or check's lane: its own resources (log group included),
    and those of the sources that invoke it, their dead-letter queues and domains."""
    members = {f.key: ix.ids_under(f.name) | {i for i, k in fn_ids.items() if k == f.key} for f in functions}
    members.update({c.key: ix.ids_under(c.key) for c in checks})
    owner: dict[str, str] = {}
    for edge in sorted(edges, key=_edge_key):
        if edge.kind == "invokes" and edge.target in members:
            owner.setdefault(edge.source, edge.target)
    for edge in sorted(edges, key=_edge_key):
        if edge.kind == "redrive" and edge.source in owner:
            owner.setdefault(edge.target, owner[edge.source])
        if edge.kind == "routes" and edge.target in owner:
            owner.setdefault(edge.source, owner[edge.target])
    for source in sources:
        if source.key in owner:
            members[owner[source.key]] |= ix.ids_under(source.key)
    return members


def _alarm_groups(
    ix: Index, members: Mapping[str, set[str]]
) -> tuple[tuple[AlarmGroup, ...], tuple[Edge, ...]]:
    """Alarms grouped by the construct that owns them; each group is drawn beside the function (or check)
    most of its alarms watch, and points to every topic its alarms notify."""
    grouped: dict[str, list[Resource]] = {}
    for alarm in ix.of_type(ALARM, COMPOSITE):
        grouped.setdefault(alarm.parent or alarm.path, []).append(alarm)
    groups: list[AlarmGroup] = []
    edges: list[Edge] = []
    for key in sorted(grouped):
        alarms = grouped[key]
        topics = sorted({t.path for a in alarms for t in _action_topics(ix, a)})
        composites = [a for a in alarms if a.type == COMPOSITE]
        inputs = {r for c in composites for r in ix.refs_of_type(c, ALARM, COMPOSITE)}
        votes = Counter(k for a in alarms for k, ids in members.items() if a.refs & ids)
        order = list(members)
        subject = min(votes, key=lambda k: (-votes[k], order.index(k))) if votes else None
        groups.append(
            AlarmGroup(
                key, len(alarms) - len(composites), len(composites), len(inputs), subject, tuple(topics)
            )
        )
        edges.extend(Edge(key, t, "notifies") for t in topics)
    return tuple(groups), tuple(edges)


def _action_topics(ix: Index, alarm: Resource) -> list[Resource]:
    refs = {r for action in ALARM_ACTIONS for r in _refs(alarm.props.get(action))}
    return sorted(
        (ix.by_id[r] for r in refs if r in ix.by_id and ix.by_id[r].type == TOPIC), key=lambda t: t.path
    )


def _topics(ix: Index) -> tuple[Topic, ...]:
    topics: list[Topic] = []
    for topic in ix.of_type(TOPIC):
        protocols: set[str] = set()
        for r in ix.resources:
            if topic.logical_id not in r.refs:
                continue
            if r.type == "AWS::SNS::Subscription":
                protocols.add(str(r.props.get("protocol", "subscription")))
            elif r.type == "AWS::Chatbot::SlackChannelConfiguration":
                protocols.add("Slack")
        topics.append(Topic(topic.path, tuple(sorted(protocols))))
    return tuple(topics)


def _watchers(
    ix: Index, functions: Sequence[Function], fn_ids: Mapping[str, str], sources: Sequence[Source]
) -> tuple[tuple[Watcher, ...], tuple[Edge, ...]]:
    watchers: list[Watcher] = []
    edges: list[Edge] = []
    for rule in ix.of_type(RULE):
        pattern = rule.props.get("eventPattern")
        targets = {r for t in _list(rule.props.get("targets")) for r in _refs(t)}
        topics = sorted(ix.by_id[r].path for r in targets if r in ix.by_id and ix.by_id[r].type == TOPIC)
        if not isinstance(pattern, dict) or not topics or targets & set(fn_ids):
            continue
        event_sources = tuple(sorted(str(s) for s in _list(pattern.get("source"))))
        watched = _watched(ix, rule, functions, fn_ids, sources)
        watchers.append(Watcher(rule.path, event_sources, watched, tuple(topics)))
        edges.extend(Edge(rule.path, t, "notifies") for t in topics)
    return tuple(watchers), tuple(edges)


# ------------------------------------------------------------------------------------------------- layout
#
# Columns, left to right: custom domains | sources | functions | deploy (groups with their hooks inside) |
# alarm groups | on-call topics. Rows are lanes: one per application function (request path first), then a
# lane for what belongs to no function, then one per scheduled check and per watcher rule. Everything of a
# lane sits in the lane's band, so most arrows run straight right. Topics span all lanes; every notification
# runs right to a vertical "bus" of its own topic, then into the topic, so no arrow crosses a box.

TITLE_SIZE, TEXT_SIZE, LABEL_SIZE = 13, 11, 10
TITLE_LINE, TEXT_LINE = 17, 15
PAD_X, PAD_Y = 12, 9
HOOK_H, HOOK_GAP = 24, 6
MIN_BOX_W, MAX_CHARS, WRAP_CHARS = 150, 44, 32
MARGIN, COL_GAP, BOX_GAP, LANE_PAD = 24, 80, 26, 14
BUS_STEP, HEADER_H, SECTION_H, TOPIC_GAP = 16, 92, 30, 40

DOMAIN_COL, SOURCE_COL, FUNCTION_COL, DEPLOY_COL, ALARM_COL, TOPIC_COL = range(6)
COLUMN_TITLES = {
    DOMAIN_COL: "Custom domain",
    SOURCE_COL: "Sources",
    FUNCTION_COL: "Lambda functions",
    DEPLOY_COL: "Deploy (CodeDeploy)",
    ALARM_COL: "Alarms (CloudWatch)",
    TOPIC_COL: "On-call (SNS)",
}
# fill, stroke
PALETTE = {
    "domain": ("#f1f5f9", "#475569"),
    "api": ("#f3e8ff", "#9333ea"),
    "queue": ("#fef3c7", "#d97706"),
    "stream": ("#fef3c7", "#d97706"),
    "dead-letter queue": ("#fef3c7", "#b45309"),
    "schedule": ("#fce7f3", "#db2777"),
    "event rule": ("#fce7f3", "#db2777"),
    "function": ("#ffedd5", "#ea580c"),
    "check": ("#fff7ed", "#f97316"),
    "deploy": ("#dbeafe", "#2563eb"),
    "alarms": ("#fee2e2", "#dc2626"),
    "topic": ("#e0e7ff", "#4f46e5"),
}
# stroke, dash pattern, marker id
EDGE_STYLES = {
    "invokes": ("#374151", "", "arrow-dark"),
    "routes": ("#374151", "", "arrow-dark"),
    "redrive": ("#374151", "3 3", "arrow-dark"),
    "deploys": ("#2563eb", "6 4", "arrow-blue"),
    "rollback": ("#2563eb", "6 4", "arrow-blue"),
    "notifies": ("#dc2626", "", "arrow-red"),
}
SOURCE_ORDER = {
    "domain": 0,
    "api": 0,
    "queue": 1,
    "stream": 1,
    "dead-letter queue": 1,
    "schedule": 2,
    "event rule": 2,
}


@dataclass(frozen=True)
class Line:
    text: str
    bold: bool = False


@dataclass(frozen=True)
class Box:
    key: str
    column: int
    anchor: str  # the lane's function, check or watcher key; "" for the lane of what belongs to none
    order: tuple[int, str, int]  # position within its lane's column
    lines: tuple[Line, ...]
    style: str
    hooks: tuple[str, ...] = ()

    @property
    def height(self) -> int:
        text = sum(TITLE_LINE if line.bold else TEXT_LINE for line in self.lines)
        return 2 * PAD_Y + text + len(self.hooks) * (HOOK_H + HOOK_GAP)

    @property
    def width(self) -> int:
        widths = [
            _text_width(line.text, TITLE_SIZE if line.bold else TEXT_SIZE, line.bold) for line in self.lines
        ]
        widths += [_text_width(h, TEXT_SIZE, False) + 2 * PAD_X for h in self.hooks]
        return max(MIN_BOX_W, max(widths, default=0) + 2 * PAD_X)


@dataclass(frozen=True)
class Placed:
    box: Box
    x: int
    y: int
    w: int
    h: int

    @property
    def cy(self) -> int:
        return self.y + self.h // 2


@dataclass(frozen=True)
class Band:
    y: int
    h: int


@dataclass(frozen=True)
class Layout:
    width: int
    height: int
    boxes: dict[str, Placed]
    columns: dict[int, tuple[int, int]]  # column -> (x, width)
    bands: tuple[Band, ...]
    guard_y: int | None  # top of the "scheduled checks and guardrails" section
    bus_x: dict[str, int]  # topic key -> x of its notification bus
    legend_y: int


_NARROW = frozenset("ijlrtf.,:;!|'()[] ")
_WIDE = frozenset("mwMW@%")


def _text_width(text: str, size: int, bold: bool) -> int:
    """A width estimate without font metrics (the standard library has none). Calibrated on DejaVu Sans,
    the widest usual fallback, so Helvetica and Arial (what GitHub's viewers use) fit with room to spare."""
    units = 0.0
    for ch in text:
        if ch in _NARROW:
            units += 0.36
        elif ch in _WIDE:
            units += 0.94
        elif ch.isupper():
            units += 0.74
        else:
            units += 0.62
    return int(units * size * (1.1 if bold else 1.0)) + 1


def _clip(text: str) -> str:
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1] + "\u2026"


def _wrap(text: str) -> tuple[Line, ...]:
    """Greedy word wrap at WRAP_CHARS; long words are clipped, never split."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and len(lines[-1]) + 1 + len(word) <= WRAP_CHARS:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return tuple(Line(_clip(line)) for line in lines)


def _path_lines(path: str) -> tuple[Line, ...]:
    """A construct path as a bold owner line and a plain leaf line: short boxes, nothing hidden."""
    if "/" not in path:
        return (Line(_clip(path), True),)
    parent, leaf = path.rsplit("/", 1)
    return Line(_clip(parent), True), Line(_clip(leaf))


def _anchors(model: Model) -> dict[str, str]:
    """The lane of every non-topic node: the function, check or watcher it belongs to ("" for none)."""
    lane = {f.key: f.key for f in model.functions}
    lane.update({c.key: c.key for c in model.checks})
    lane.update({w.key: w.key for w in model.watchers})
    rank = {key: i for i, key in enumerate(lane)}
    for edge in sorted(model.edges, key=lambda e: (rank.get(e.target, len(rank)), _edge_key(e))):
        if edge.kind == "invokes" and edge.target in lane:
            lane.setdefault(edge.source, lane[edge.target])
    for kind, downstream in (("routes", False), ("redrive", True)):
        for edge in sorted(model.edges, key=_edge_key):
            known, new = (edge.source, edge.target) if downstream else (edge.target, edge.source)
            if edge.kind == kind and known in lane:
                lane.setdefault(new, lane[known])
    lane.update({d.key: d.function or "" for d in model.deployments})
    lane.update({g.key: g.subject or "" for g in model.alarm_groups})
    for source in model.sources:
        lane.setdefault(source.key, "")
    return lane


def _boxes(model: Model) -> list[Box]:
    lane = _anchors(model)
    redrive_of = {e.target: e.source for e in model.edges if e.kind == "redrive"}
    return [
        *(_function_box(f, lane[f.key]) for f in model.functions),
        *(_source_box(s, lane[s.key], redrive_of.get(s.key, s.key)) for s in model.sources),
        *(_check_box(c) for c in model.checks),
        *(_deploy_box(d, lane[d.key]) for d in model.deployments),
        *(_alarm_box(g, lane[g.key]) for g in model.alarm_groups),
        *(_watcher_box(w) for w in model.watchers),
        *(_topic_box(t) for t in model.topics),
    ]


def _source_box(source: Source, anchor: str, queue: str) -> Box:
    """`queue` is the queue a dead-letter queue serves (else the source itself): a DLQ sits right under it."""
    column = DOMAIN_COL if source.kind == "domain" else SOURCE_COL
    order = (SOURCE_ORDER[source.kind], queue, int(queue != source.key))
    return Box(
        source.key, column, anchor, order, (*_path_lines(source.key), Line(_clip(source.detail))), source.kind
    )


def _check_box(check: Check) -> Box:
    lines = (*_path_lines(check.key), Line("scheduled check"))
    lines += _wrap("of " + ", ".join(check.watches)) if check.watches else ()
    return Box(check.key, FUNCTION_COL, check.key, (0, check.key, 0), lines, "check")


def _deploy_box(d: Deployment, anchor: str) -> Box:
    hooks = tuple(f"{h.stage}: {h.name}" if h.stage != "hook" else h.name for h in d.hooks)
    lines = (*_path_lines(d.key), Line(_clip(d.config)))
    return Box(d.key, DEPLOY_COL, anchor, (0, d.key, 0), lines, "deploy", hooks)


def _watcher_box(w: Watcher) -> Box:
    lines = (*_path_lines(w.key), Line("EventBridge event pattern"))
    lines += _wrap("source " + ", ".join(w.sources)) if w.sources else ()
    lines += _wrap("changes to " + ", ".join(w.watches)) if w.watches else ()
    return Box(w.key, SOURCE_COL, w.key, (3, w.key, 0), lines, "event rule")


def _topic_box(t: Topic) -> Box:
    detail = "SNS: " + ", ".join(t.subscribers) if t.subscribers else "SNS, no subscribers"
    return Box(t.key, TOPIC_COL, "", (0, t.key, 0), (*_path_lines(t.key), Line(_clip(detail))), "topic")


def _function_box(f: Function, anchor: str) -> Box:
    size = ", ".join(x for x in (f.runtime, f"{f.memory_mb} MB" if f.memory_mb else "") if x)
    alias = f"Lambda, alias {f.alias}" if f.alias else "Lambda"
    lines: tuple[Line, ...] = (Line(_clip(f.name), True), Line(_clip(alias)))
    lines += (Line(_clip(size)),) if size else ()
    return Box(f.key, FUNCTION_COL, anchor, (0, f.key, 0), lines, "function")


def _alarm_box(g: AlarmGroup, anchor: str) -> Box:
    lines = [Line(_clip(g.key), True)]
    if g.alarms:
        lines.append(Line(_plural(g.alarms, "alarm")))
    if g.composites:
        lines.append(Line(_plural(g.composites, "composite alarm")))
        lines.append(Line(f"combining {_plural(g.composite_inputs, 'alarm')}"))
    return Box(g.key, ALARM_COL, anchor, (0, g.key, 0), tuple(lines), "alarms")


def layout(model: Model) -> Layout:
    boxes = _boxes(model)
    lanes = [f.key for f in model.functions]
    if any(b.anchor == "" and b.column != TOPIC_COL for b in boxes):
        lanes.append("")
    main_lanes = len(lanes)
    lanes += [c.key for c in model.checks] + [w.key for w in model.watchers]
    topics = [b for b in boxes if b.column == TOPIC_COL]
    columns, bus_x = _columns(boxes, [t.key for t in topics], _gap(model, boxes))
    placed: dict[str, Placed] = {}
    bands: list[Band] = []
    y, guard_y = HEADER_H, None
    for i, anchor in enumerate(lanes):
        if i == main_lanes:
            guard_y, y = y, y + SECTION_H
        members = [b for b in boxes if b.anchor == anchor and b.column != TOPIC_COL]
        height = _place_lane(members, columns, y, placed)
        bands.append(Band(y, height))
        y += height
    bottom = max(y, _place_topics(topics, columns, HEADER_H, y, placed))
    if not boxes:
        bottom += 2 * LANE_PAD + TEXT_LINE  # room for the "nothing to draw" line
    text_widths = [
        _text_width(_title(model), 16, True),
        _text_width(SUBTITLE, TEXT_SIZE, False),
        _legend_width(),
    ]
    width = max([*(x + w for x, w in columns.values()), *(MARGIN + w for w in text_widths)]) + MARGIN
    return Layout(width, bottom + 60 + MARGIN, placed, columns, tuple(bands), guard_y, bus_x, bottom + 28)


def _columns(
    boxes: Sequence[Box], topics: Sequence[str], gap: int
) -> tuple[dict[int, tuple[int, int]], dict[str, int]]:
    """Used columns only, each as wide as its widest box; the topic buses sit in the gap before the topics."""
    columns: dict[int, tuple[int, int]] = {}
    bus_x: dict[str, int] = {}
    x = MARGIN
    for column in sorted({b.column for b in boxes}):
        if column == TOPIC_COL and columns:
            bus_x = {key: x - gap + 28 + i * BUS_STEP for i, key in enumerate(topics)}
            x += max(0, len(topics) - 1) * BUS_STEP
        width = max(b.width for b in boxes if b.column == column)
        columns[column] = (x, width)
        x += width + gap
    return columns, bus_x


def _gap(model: Model, boxes: Sequence[Box]) -> int:
    """Wide enough for the longest label of an arrow between two columns, arrowhead included."""
    column = {b.key: b.column for b in boxes}
    labels = [e.label for e in model.edges if e.label and column.get(e.source) != column.get(e.target)]
    return max([COL_GAP, *(_text_width(label, LABEL_SIZE, False) + 36 for label in labels)])


def _place_lane(
    members: Sequence[Box], columns: Mapping[int, tuple[int, int]], y: int, out: dict[str, Placed]
) -> int:
    """Stack each column's boxes, centred in the lane; returns the lane's height."""
    stacks = {c: sorted((b for b in members if b.column == c), key=lambda b: b.order) for c in columns}
    heights = {c: sum(b.height for b in s) + BOX_GAP * max(0, len(s) - 1) for c, s in stacks.items()}
    lane_h = max(heights.values(), default=0) + 2 * LANE_PAD
    for column, stack in stacks.items():
        x, width = columns[column]
        top = y + (lane_h - heights[column]) // 2
        for box in stack:
            out[box.key] = Placed(box, x, top, width, box.height)
            top += box.height + BOX_GAP
    return lane_h


def _place_topics(
    topics: Sequence[Box],
    columns: Mapping[int, tuple[int, int]],
    top: int,
    bottom: int,
    out: dict[str, Placed],
) -> int:
    if not topics:
        return bottom
    x, width = columns[TOPIC_COL]
    total = sum(t.height for t in topics) + TOPIC_GAP * (len(topics) - 1)
    y = max(top + LANE_PAD, top + (bottom - top - total) // 2)
    for topic in topics:
        out[topic.key] = Placed(topic, x, y, width, topic.height)
        y += topic.height + TOPIC_GAP
    return y - TOPIC_GAP + LANE_PAD


# ------------------------------------------------------------------------------------------------- render


def _text(
    x: int, y: int, text: str, size: int, *, bold: bool = False, anchor: str = "middle", fill: str = "#111827"
) -> str:
    weight = ' font-weight="bold"' if bold else ""
    return (
        f'<text x="{x}" y="{y}" font-size="{size}"{weight} text-anchor="{anchor}" fill="{fill}">'
        f"{escape(text)}</text>"
    )


def _halo_text(x: int, y: int, text: str, fill: str, anchor: str = "middle") -> str:
    """An edge label with a white outline, readable where it crosses a line."""
    return (
        f'<text x="{x}" y="{y}" font-size="{LABEL_SIZE}" text-anchor="{anchor}" fill="{fill}" '
        f'stroke="#ffffff" stroke-width="3" paint-order="stroke">{escape(text)}</text>'
    )


def _box_svg(p: Placed) -> list[str]:
    fill, stroke = PALETTE[p.box.style]
    dash = ' stroke-dasharray="5 3"' if p.box.style == "check" else ""
    out = [
        f'<rect x="{p.x}" y="{p.y}" width="{p.w}" height="{p.h}" rx="6" fill="{fill}" stroke="{stroke}" '
        f'stroke-width="1.5"{dash}/>'
    ]
    cx, y = p.x + p.w // 2, p.y + PAD_Y
    for line in p.box.lines:
        step = TITLE_LINE if line.bold else TEXT_LINE
        size = TITLE_SIZE if line.bold else TEXT_SIZE
        out.append(
            _text(
                cx, y + step - 4, line.text, size, bold=line.bold, fill="#111827" if line.bold else "#374151"
            )
        )
        y += step
    for hook in p.box.hooks:
        y += HOOK_GAP
        out.append(
            f'<rect x="{p.x + PAD_X}" y="{y}" width="{p.w - 2 * PAD_X}" height="{HOOK_H}" rx="4" '
            f'fill="#ffffff" stroke="{stroke}"/>'
        )
        out.append(_text(cx, y + HOOK_H // 2 + 4, hook, TEXT_SIZE))
        y += HOOK_H
    return out


def _edge_svg(edge: Edge, lay: Layout) -> list[str]:
    a, b = lay.boxes.get(edge.source), lay.boxes.get(edge.target)
    if a is None or b is None:
        return []
    stroke, dash, marker = EDGE_STYLES[edge.kind]
    if edge.kind == "notifies" and edge.target in lay.bus_x:
        bus = lay.bus_x[edge.target]
        path, label_at = f"M {a.x + a.w} {a.cy} H {bus} V {b.cy} H {b.x - 2}", None
    elif a.box.column == b.box.column:
        path, label_at = _within(a, b)
    else:
        path, label_at = _across(a, b)
    dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
    out = [
        f'<path d="{path}" fill="none" stroke="{stroke}" stroke-width="1.5"{dash_attr} '
        f'marker-end="url(#{marker})"/>'
    ]
    if edge.label and label_at is not None:
        out.append(_halo_text(label_at[0], label_at[1], edge.label, stroke, label_at[2]))
    return out


def _within(a: Placed, b: Placed) -> tuple[str, tuple[int, int, str]]:
    """An arrow between two boxes of one column (a queue to its dead-letter queue), labelled beside it."""
    x = a.x + a.w // 2
    y1, y2 = (a.y + a.h, b.y - 2) if a.y < b.y else (a.y, b.y + b.h + 2)
    return f"M {x} {y1} V {y2}", (x + 6, (y1 + y2) // 2 + 4, "start")


def _across(a: Placed, b: Placed) -> tuple[str, tuple[int, int, str]]:
    """An arrow between columns: straight when the centres (nearly) line up, else an S-curve whose label sits
    over its flat start, where the curve cannot run through the text."""
    rightwards = a.x < b.x
    x1, x2 = (a.x + a.w, b.x - 2) if rightwards else (a.x, b.x + b.w + 2)
    if abs(a.cy - b.cy) <= 3:
        return f"M {x1} {a.cy} H {x2}", ((x1 + x2) // 2, a.cy - 5, "middle")
    mid = (x1 + x2) // 2
    label = (x1 + 6, a.cy - 5, "start") if rightwards else (x1 - 6, a.cy - 5, "end")
    return f"M {x1} {a.cy} C {mid} {a.cy} {mid} {b.cy} {x2} {b.cy}", label


def _defs() -> list[str]:
    out = ["<defs>"]
    for marker, stroke in sorted({(marker, stroke) for stroke, _dash, marker in EDGE_STYLES.values()}):
        out.append(
            f'<marker id="{marker}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            f'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="{stroke}"/></marker>'
        )
    out.append("</defs>")
    return out


SUBTITLE = "Generated by scripts/diagram from cdk.out/tree.json (make diagram); do not edit by hand."
NOTHING = "Nothing to draw: no aliased function, source, deployment group, alarm or topic in this stack."


def _title(model: Model) -> str:
    return f"{model.stack}: request path, deploy path, alarms and on-call"


def _frame(model: Model, lay: Layout) -> list[str]:
    out = [
        f'<rect x="0" y="0" width="{lay.width}" height="{lay.height}" fill="#ffffff"/>',
        _text(
            MARGIN,
            30,
            _title(model),
            16,
            bold=True,
            anchor="start",
        ),
        _text(
            MARGIN,
            50,
            SUBTITLE,
            TEXT_SIZE,
            anchor="start",
            fill="#6b7280",
        ),
    ]
    for column, (x, width) in sorted(lay.columns.items()):
        out.append(_text(x + width // 2, HEADER_H - 12, COLUMN_TITLES[column], 12, bold=True, fill="#4b5563"))
    # Lane rules stop short of the notification buses: the topics span every lane.
    right = min(lay.bus_x.values(), default=lay.width - MARGIN + 12) - 12
    for band in lay.bands[1:]:
        out.append(f'<line x1="{MARGIN}" y1="{band.y}" x2="{right}" y2="{band.y}" stroke="#e5e7eb"/>')
    if lay.guard_y is not None:
        out.append(
            f'<line x1="{MARGIN}" y1="{lay.guard_y}" x2="{right}" y2="{lay.guard_y}" '
            f'stroke="#9ca3af" stroke-dasharray="4 4"/>'
        )
        out.append(
            _text(
                MARGIN,
                lay.guard_y + 20,
                "Scheduled checks and guardrails",
                12,
                bold=True,
                anchor="start",
                fill="#4b5563",
            )
        )
    return out


LEGEND = (
    ("invokes", "request / event path (to the alias)"),
    ("deploys", "deploy path: CodeDeploy shifts the alias, rolls back on alarms"),
    ("notifies", "notification"),
)


def _legend_step(label: str) -> int:
    return 44 + _text_width(label, TEXT_SIZE, False) + 32


def _legend_width() -> int:
    return sum(_legend_step(label) for _, label in LEGEND) - 32


def _legend(lay: Layout) -> list[str]:
    out: list[str] = []
    x, y = MARGIN, lay.legend_y
    for kind, label in LEGEND:
        stroke, dash, marker = EDGE_STYLES[kind]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(
            f'<path d="M {x} {y} H {x + 36}" stroke="{stroke}" stroke-width="1.5"{dash_attr} '
            f'marker-end="url(#{marker})"/>'
        )
        out.append(_text(x + 44, y + 4, label, TEXT_SIZE, anchor="start", fill="#374151"))
        x += _legend_step(label)
    return out


def render_svg(model: Model) -> str:
    """The picture as a standalone SVG document: same model, same bytes."""
    lay = layout(model)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{lay.width}" height="{lay.height}" '
        f'viewBox="0 0 {lay.width} {lay.height}" font-family="Helvetica, Arial, sans-serif">',
        f"<title>{escape(model.stack)} architecture</title>",
        *_defs(),
        *_frame(model, lay),
    ]
    # Edges under boxes: a line never hides a label.
    for edge in sorted(model.edges, key=_edge_key):
        parts.extend(_edge_svg(edge, lay))
    for key in sorted(lay.boxes):
        parts.extend(_box_svg(lay.boxes[key]))
    if not lay.boxes:
        parts.append(
            _text(MARGIN, HEADER_H + LANE_PAD + 11, NOTHING, TEXT_SIZE, anchor="start", fill="#374151")
        )
    parts.extend(_legend(lay))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------------------- CLI


def _resolve(path: Path) -> Path:
    return path if path.is_absolute() else REPO_ROOT / path


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def load_tree(path: Path) -> dict[str, Any]:
    try:
        tree = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DiagramError(f"{_shown(path)} not found: run make synth first") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DiagramError(f"{_shown(path)} cannot be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise DiagramError(f"{_shown(path)} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(tree, dict) or not isinstance(tree.get("tree"), dict):
        raise DiagramError(f"{_shown(path)} is not a CDK tree.json (no 'tree' node)")
    return tree


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tree", type=Path, default=DEFAULT_TREE, help="tree.json (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="SVG to write (default: %(default)s)")
    parser.add_argument("--stack", default=DEFAULT_STACK, help="stack to draw (default: %(default)s)")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if --out differs from what would be written"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    tree_path, out = _resolve(args.tree), _resolve(args.out)
    try:
        model = build_model(load_tree(tree_path), args.stack)
    except DiagramError as exc:
        message = str(exc) if str(exc).startswith(_shown(tree_path)) else f"{_shown(tree_path)}: {exc}"
        print(f"error: {message}", file=sys.stderr)
        return 2
    svg = render_svg(model).encode("utf-8")
    if args.check:
        if not out.is_file() or out.read_bytes() != svg:
            print(f"{_shown(out)} is stale: run make diagram", file=sys.stderr)
            return 1
        print(f"{_shown(out)} is up to date")
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(svg)
    print(f"wrote {_shown(out)}: {args.stack}, {len(model.functions)} functions, {len(model.edges)} arrows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
