"""Small server-rendered SVG charts: no script, no CDN, readable in a screenshot.

Each point carries a <title>, so its number shows on hover; the page puts a table of the
same numbers beside every chart for those who would rather read.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 560, 180
LEFT, RIGHT, TOP, BOTTOM = 44, 10, 12, 28
PALETTE = ("#2f6fb3", "#c0392b", "#d68910", "#1e8449", "#7d3c98", "#5d6d7e")


@dataclass
class Series:
    name: str
    values: Sequence[float | None]


def _scale(top: float) -> float:
    return top if top > 0 else 1.0


def _frame(labels: Sequence[str], top: float, title: str) -> list[SafeString]:
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [
        format_html(
            '<line x1="{}" y1="{}" x2="{}" y2="{}" class="axis"/>',
            LEFT,
            HEIGHT - BOTTOM,
            WIDTH - RIGHT,
            HEIGHT - BOTTOM,
        ),
        format_html(
            '<text x="{}" y="{}" class="tick" text-anchor="end">{}</text>',
            LEFT - 4,
            TOP + 4,
            _fmt(top),
        ),
        format_html(
            '<text x="{}" y="{}" class="tick" text-anchor="end">0</text>', LEFT - 4, TOP + plot_h
        ),
    ]
    step = max(1, len(labels) // 6)
    for i, label in enumerate(labels):
        if i % step == 0 or i == len(labels) - 1:
            parts.append(
                format_html(
                    '<text x="{}" y="{}" class="tick" text-anchor="middle">{}</text>',
                    _x(i, len(labels)),
                    HEIGHT - 8,
                    label,
                )
            )
    return [format_html("<title>{}</title>", title), *parts]


def _x(i: int, count: int) -> float:
    span = WIDTH - LEFT - RIGHT
    return round(LEFT + span * (i + 0.5) / max(count, 1), 1)


def _y(value: float, top: float) -> float:
    plot_h = HEIGHT - TOP - BOTTOM
    return round(HEIGHT - BOTTOM - plot_h * value / _scale(top), 1)


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _svg(parts: list[SafeString], title: str, legend: Sequence[Series]) -> SafeString:
    keys = format_html_join(
        "",
        '<text x="{}" y="10" class="legend" fill="{}">■ {}</text>',
        ((LEFT + 110 * i, PALETTE[i % len(PALETTE)], s.name) for i, s in enumerate(legend)),
    )
    body = mark_safe("".join(parts))  # noqa: S308 - every part is built with format_html
    return format_html(
        '<svg class="chart" viewBox="0 0 {} {}" role="img" aria-label="{}">{}{}</svg>',
        WIDTH,
        HEIGHT,
        title,
        body,
        keys if len(legend) > 1 else "",
    )


def bar_chart(labels: Sequence[str], series: Sequence[Series], *, title: str) -> SafeString:
    """Stacked bars, one per label; each segment titled with its series and value."""
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(labels))]
    top = _scale(max(totals, default=0))
    slot = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    bar_w = max(2.0, round(slot * 0.7, 1))
    parts = _frame(labels, top, title)
    for i, label in enumerate(labels):
        base = 0.0
        for n, s in enumerate(series):
            value = s.values[i] or 0
            if not value:
                continue
            y_top, y_base = _y(base + value, top), _y(base, top)
            parts.append(
                format_html(
                    '<rect x="{}" y="{}" width="{}" height="{}" fill="{}">'
                    "<title>{}: {} {}</title></rect>",
                    round(_x(i, len(labels)) - bar_w / 2, 1),
                    y_top,
                    bar_w,
                    round(y_base - y_top, 1),
                    PALETTE[n % len(PALETTE)],
                    label,
                    _fmt(value),
                    s.name,
                )
            )
            base += value
    return _svg(parts, title, series)


def line_chart(labels: Sequence[str], series: Sequence[Series], *, title: str) -> SafeString:
    """One line per series, a dot per known value titled with it; gaps where unknown."""
    known = [v for s in series for v in s.values if v is not None]
    top = _scale(max(known, default=0))
    parts = _frame(labels, top, title)
    for n, s in enumerate(series):
        colour = PALETTE[n % len(PALETTE)]
        points = [
            (_x(i, len(labels)), _y(v, top), labels[i], v)
            for i, v in enumerate(s.values)
            if v is not None
        ]
        if len(points) > 1:
            path = " ".join(f"{x},{y}" for x, y, _, _ in points)
            parts.append(
                format_html('<polyline points="{}" fill="none" stroke="{}"/>', path, colour)
            )
        for x, y, label, v in points:
            parts.append(
                format_html(
                    '<circle cx="{}" cy="{}" r="3" fill="{}"><title>{}: {} {}</title></circle>',
                    x,
                    y,
                    colour,
                    label,
                    _fmt(v),
                    s.name,
                )
            )
    return _svg(parts, title, series)
