"""Plots rendered on the server as inline SVG (no JavaScript library, no CDN): one panel per
metric, a point per method with its interval as a bar, the best in bold."""
from __future__ import annotations

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from evalsite.results import Column, ResultsTable
from evalsite.results import format_value as formatted

WIDTH = 460
ROW_HEIGHT = 26
LABEL_WIDTH = 150
VALUE_WIDTH = 70
TOP = 22
BOTTOM = 24


def metric_plot(table: ResultsTable, column: Column) -> SafeString:
    points = []
    for row in table.rows:
        cell = row.cells.get(column.metric)
        if cell is None:
            continue
        score = cell.score
        low, high = score.ci_low, score.ci_high
        if low is None and score.std is not None:
            low, high = score.value - score.std, score.value + score.std
        points.append((row.key, score.value, low, high, cell.best, cell.worse))
    if not points:
        return mark_safe("")
    values = [v for _, value, low, high, _, _ in points for v in (value, low, high) if v is not None]
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.05 or 1.0
    lo, hi = lo - pad, hi + pad
    plot_left, plot_right = LABEL_WIDTH, WIDTH - VALUE_WIDTH

    def x(value: float) -> float:
        return plot_left + (value - lo) / (hi - lo) * (plot_right - plot_left)

    height = TOP + ROW_HEIGHT * len(points) + BOTTOM
    title = f"{column.label} ({column.arrow} better)"
    parts = [
        f'<svg class="metric-plot" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(title)} per method">',
        f'<text x="0" y="14" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]
    for index, (key, value, low, high, best, worse) in enumerate(points):
        y = TOP + ROW_HEIGHT * index + ROW_HEIGHT / 2
        weight = ' font-weight="bold"' if best else ""
        parts.append(f'<text x="0" y="{y + 4:.1f}" font-size="12"{weight}>{escape(key)}{" *" if worse else ""}</text>')
        parts.append(f'<line x1="{plot_left}" x2="{plot_right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        if low is not None and high is not None:
            parts.append(f'<line class="interval" x1="{x(low):.1f}" x2="{x(high):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                         f'stroke="#555" stroke-width="2"/>')
            for end in (low, high):
                parts.append(f'<line x1="{x(end):.1f}" x2="{x(end):.1f}" y1="{y - 5:.1f}" y2="{y + 5:.1f}" stroke="#555"/>')
        parts.append(f'<circle class="value" cx="{x(value):.1f}" cy="{y:.1f}" r="4.5" '
                     f'fill="{"#1a5fb4" if best else "#777"}"><title>{escape(key)}: {formatted(column.metric, value)}'
                     f'</title></circle>')
        parts.append(f'<text x="{plot_right + 8}" y="{y + 4:.1f}" font-size="12"{weight}>'
                     f'{formatted(column.metric, value)}</text>')
    axis_y = TOP + ROW_HEIGHT * len(points) + 4
    parts.append(f'<line x1="{plot_left}" x2="{plot_right}" y1="{axis_y}" y2="{axis_y}" stroke="#999"/>')
    for tick in (lo + pad, hi - pad):
        parts.append(f'<text x="{x(tick):.1f}" y="{axis_y + 14}" font-size="10" text-anchor="middle">'
                     f'{formatted(column.metric, tick)}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))


def results_plots(table: ResultsTable) -> list[SafeString]:
    return [plot for plot in (metric_plot(table, column) for column in table.columns) if plot]
