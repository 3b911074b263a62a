"""The laid-out model as a self-contained SVG: boxes, arrows, title and legend; same model, same bytes."""

from __future__ import annotations

from xml.sax.saxutils import escape

from scripts.diagram.build import _edge_key
from scripts.diagram.layout import (
    COLUMN_TITLES,
    EDGE_STYLES,
    HEADER_H,
    HOOK_GAP,
    HOOK_H,
    LABEL_SIZE,
    LANE_PAD,
    LEGEND,
    MARGIN,
    PAD_X,
    PAD_Y,
    PALETTE,
    SUBTITLE,
    TEXT_LINE,
    TEXT_SIZE,
    TITLE_LINE,
    TITLE_SIZE,
    Layout,
    Placed,
    _legend_step,
    _title,
    layout,
)
from scripts.diagram.model import Edge, Model


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


NOTHING = "Nothing to draw: no aliased function, source, deployment group, alarm or topic in this stack."


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
