"""SVG charts drawn on the server: bars coloured by class, and lines with reference levels.

Each chart is an `<svg role="img">` named by its title and described by a
sentence; the page shows the same numbers in a table beside it, so nothing
depends on seeing colours or shapes. Sizes are in viewBox units: the chart
scales to the width of the screen.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup

W, H = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 40, 24, 10, 34


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar: its axis label, value, fill colour and accessible label."""

    label: str
    value: float
    colour: str
    title: str


@dataclass(frozen=True, slots=True)
class Line:
    """One series of a line chart: name, colour, (label, value or None) points, dashed or not."""

    name: str
    colour: str
    points: Sequence[tuple[str, float | None]]
    dashed: bool = False


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _frame(chart_id: str, title: str, desc: str, body: str) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-labelledby="{chart_id}-t {chart_id}-d" '
        f'preserveAspectRatio="xMidYMid meet"><title id="{chart_id}-t">{_esc(title)}</title>'
        f'<desc id="{chart_id}-d">{_esc(desc)}</desc>{body}</svg>')


def _y_axis(lo: float, hi: float, ticks: Sequence[float]) -> tuple[str, list[str]]:
    parts = []
    for t in ticks:
        y = _y(t, lo, hi)
        parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{LEFT - 4}" y="{y + 4:.1f}" class="tick" text-anchor="end">{t:g}</text>')
    return "", parts


def _y(value: float, lo: float, hi: float) -> float:
    span = (hi - lo) or 1.0
    return TOP + (H - TOP - BOTTOM) * (1 - (value - lo) / span)


def _x_labels(labels: Sequence[str], xs: Sequence[float]) -> str:
    """At most about eight labels, each where its text first appears (hourly points share a day's label)."""
    firsts = [i for i, label in enumerate(labels) if i == 0 or label != labels[i - 1]]
    every = max(1, len(firsts) // 8)
    return "".join(f'<text x="{xs[i]:.1f}" y="{H - 14}" class="tick" text-anchor="middle">{_esc(labels[i])}</text>'
                   for k, i in enumerate(firsts) if k % every == 0)


def bar_chart(chart_id: str, title: str, desc: str, bars: Sequence[Bar], top: float) -> Markup:
    """Bars from 0 to `top`, one per item, each with its own colour and a <title> for pointer users."""
    if not bars:
        return Markup("")
    step = (W - LEFT - RIGHT) / len(bars)
    body = "".join(_y_axis(0, top, [0, top / 2, top])[1])
    xs = []
    for i, bar in enumerate(bars):
        x = LEFT + i * step
        y = _y(min(bar.value, top), 0, top)
        xs.append(x + step / 2)
        body += (f'<rect x="{x + step * 0.1:.1f}" y="{y:.1f}" width="{step * 0.8:.1f}" height="{H - BOTTOM - y:.1f}" '
                 f'fill="{bar.colour}" class="bar"><title>{_esc(bar.title)}</title></rect>')
    body += _x_labels([b.label for b in bars], xs)
    return _frame(chart_id, title, desc, body)


def line_chart(chart_id: str, title: str, desc: str, lines: Sequence[Line],
               references: Sequence[tuple[float, str]] = ()) -> Markup:
    """Lines over shared x labels, with horizontal reference levels (value, label)."""
    values = [v for line in lines for _, v in line.points if v is not None] + [r for r, _ in references]
    if not values or not lines:
        return Markup("")
    lo, hi = min(values), max(values)
    pad = max(1.0, (hi - lo) * 0.1)
    lo, hi = lo - pad, hi + pad
    labels = [label for label, _ in lines[0].points]
    step = (W - LEFT - RIGHT) / max(1, len(labels) - 1)
    xs = [LEFT + i * step for i in range(len(labels))]
    body = "".join(_y_axis(lo, hi, [round(lo), round((lo + hi) / 2), round(hi)])[1])
    for value, label in references:
        y = _y(value, lo, hi)
        body += (f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="ref"/>'
                 f'<text x="{W - RIGHT - 2}" y="{y - 3:.1f}" class="tick" text-anchor="end">{_esc(label)}</text>')
    for line in lines:
        path, pen = "", "M"
        for x, (_, v) in zip(xs, line.points, strict=False):
            if v is None:
                pen = "M"
                continue
            path += f"{pen}{x:.1f},{_y(v, lo, hi):.1f} "
            pen = "L"
        dash = ' stroke-dasharray="6 4"' if line.dashed else ""
        body += f'<path d="{path.strip()}" fill="none" stroke="{line.colour}" stroke-width="2.5"{dash}/>'
    body += _x_labels(labels, xs)
    legend_x = LEFT
    for line in lines:
        dash = ' stroke-dasharray="6 4"' if line.dashed else ""
        body += (f'<line x1="{legend_x}" x2="{legend_x + 18}" y1="{H - 4}" y2="{H - 4}" stroke="{line.colour}" '
                 f'stroke-width="2.5"{dash}/><text x="{legend_x + 22}" y="{H}" class="tick">{_esc(line.name)}</text>')
        legend_x += 30 + 7 * len(line.name)
    return _frame(chart_id, title, desc, body)
