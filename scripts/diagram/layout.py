"""Where every box of the model goes: columns, lanes and sizes, computed before anything is drawn."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scripts.diagram.build import _edge_key
from scripts.diagram.model import (
    AlarmGroup,
    Check,
    Deployment,
    Function,
    Model,
    Source,
    Topic,
    Watcher,
    _plural,
)

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
# Colours per kind of box: data, alike line by line by design.
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


# Records only: `duplicates` pairs their field lists with other records' by shape; no logic repeats.
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


SUBTITLE = "Generated by scripts/diagram from cdk.out/tree.json (make diagram); do not edit by hand."


def _title(model: Model) -> str:
    return f"{model.stack}: request path, deploy path, alarms and on-call"


LEGEND = (
    ("invokes", "request / event path (to the alias)"),
    ("deploys", "deploy path: CodeDeploy shifts the alias, rolls back on alarms"),
    ("notifies", "notification"),
)


def _legend_step(label: str) -> int:
    return 44 + _text_width(label, TEXT_SIZE, False) + 32


def _legend_width() -> int:
    return sum(_legend_step(label) for _, label in LEGEND) - 32
