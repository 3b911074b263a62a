"""The model of one stack, built from its resources and their references: no construct name is hard-coded;
the one inference, which function a deployment group deploys, is explained at _deployments.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from scripts.diagram.model import (
    ALARM,
    ALARM_ACTIONS,
    ALIAS,
    API_INTEGRATIONS,
    API_KINDS,
    COMPOSITE,
    DEPLOYMENT_GROUP,
    DOMAIN_MAPPINGS,
    DOMAINS,
    LAMBDA,
    POLICIES,
    QUEUE,
    ROLE,
    RULE,
    STREAM_KINDS,
    TOPIC,
    VERSION,
    AlarmGroup,
    Check,
    Deployment,
    DiagramError,
    Edge,
    Function,
    Hook,
    Model,
    Source,
    Topic,
    Watcher,
)
from scripts.diagram.tree import Index, Resource, _common_path, _refs, find_stacks, index_resources


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
