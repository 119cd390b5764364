"""Inline SVG charts for the dashboard (no script, no CDN: they draw offline and in any browser)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from itertools import pairwise

from markupsafe import Markup, escape

from runnerguard.domain.charts import Series

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 14, 28
COLOURS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea")
NO_DATA = "no data in this period"


def _fmt_day(t: float) -> str:
    return time.strftime("%a %d", time.gmtime(t))


def line_chart(
    title: str, series: Sequence[Series], *, since: float, until: float,
    fmt: Callable[[float], str], y_max: float | None = None, hline: float | None = None, hline_label: str = "",
    mark_last: bool = False,
) -> Markup:
    """A line per series over [since, until]; gaps (None) break the line; an optional dashed reference line.

    `mark_last`: the first series' latest value as a labelled point, and a marker where it crossed `hline` upwards
    (the latest crossing labelled with its time), so "where is it now, and since when" reads at a glance.
    """
    values = [v for s in series for _, v in s.points if v is not None]
    top = max([*values, hline or 0.0, y_max or 0.0, 1e-9])
    if y_max is None:
        top *= 1.1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + (t - since) / max(until - since, 1e-9) * plot_w

    def y(v: float) -> float:
        return TOP + plot_h - min(v, top) / top * plot_h

    parts = [f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(title)}</title>",
             f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" class="plot"/>']
    for frac in (0.0, 0.5, 1.0):
        v = top * frac
        parts.append(f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" class="tick" text-anchor="end">{escape(fmt(v))}</text>')
    day = 86400.0
    t = since - since % day + day
    while t < until:
        parts.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{TOP}" y2="{TOP + plot_h}" class="grid"/>')
        parts.append(f'<text x="{x(t):.1f}" y="{HEIGHT - 8}" class="tick" text-anchor="middle">'
                     f"{escape(_fmt_day(t))}</text>")
        t += day
    if hline is not None:
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(hline):.1f}" y2="{y(hline):.1f}" '
                     f'class="threshold"><title>{escape(hline_label)}</title></line>')
    for n, line in enumerate(series):
        colour = COLOURS[n % len(COLOURS)]
        for run in _runs(line.points):
            coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in run)
            if len(run) == 1:
                t0, v0 = run[0]
                parts.append(f'<circle cx="{x(t0):.1f}" cy="{y(v0):.1f}" r="2.5" fill="{colour}"/>')
            else:
                parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{LEFT + 8 + 70 * n}" y="{TOP + 14}" fill="{colour}" class="legend">'
                     f"{escape(line.name)}</text>")
    if mark_last and series:
        parts += _marks(series[0].points, x, y, fmt, hline)
    if not values:
        parts.append(f'<text x="{LEFT + plot_w / 2}" y="{TOP + plot_h / 2}" class="empty" text-anchor="middle">'
                     f"{NO_DATA}</text>")
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every piece of text in it went through escape()


def _marks(points: Sequence[tuple[float, float | None]], x: Callable[[float], float], y: Callable[[float], float],
           fmt: Callable[[float], str], hline: float | None) -> list[str]:
    known = [(t, v) for t, v in points if v is not None]
    if not known:
        return []
    out = []
    if hline is not None:
        crossings = [(t0 + (hline - v0) / (v1 - v0) * (t1 - t0))
                     for (t0, v0), (t1, v1) in pairwise(known) if v0 <= hline < v1]
        for n, t in enumerate(crossings):
            out.append(f'<path class="crossing" d="M{x(t):.1f},{y(hline) - 7:.1f} l-5,-9 h10 z">'
                       f"<title>crossed {escape(fmt(hline))} at {escape(_fmt_time(t))}</title></path>")
            if n == len(crossings) - 1:
                anchor = "end" if x(t) > LEFT + (WIDTH - LEFT - RIGHT) * 0.6 else "start"
                shift = -8 if anchor == "end" else 8
                out.append(f'<text x="{x(t) + shift:.1f}" y="{y(hline) - 9:.1f}" class="crossing-label" '
                           f'text-anchor="{anchor}">crossed {escape(_fmt_time(t))}</text>')
    t, v = known[-1]
    out.append(f'<circle class="last" cx="{x(t):.1f}" cy="{y(v):.1f}" r="5"/>')
    label_y = y(v) + 18 if y(v) < TOP + 18 else y(v) - 9
    out.append(f'<text class="last-label" x="{x(t) - 8:.1f}" y="{label_y:.1f}" text-anchor="end">'
               f"now {escape(fmt(v))}</text>")
    return out


def _fmt_time(t: float) -> str:
    return time.strftime("%a %d %H:%M", time.gmtime(t))


def _runs(points: Sequence[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    runs: list[list[tuple[float, float]]] = [[]]
    for t, v in points:
        if v is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((t, v))
    return [r for r in runs if r]


def bar(fraction: float | None, *, target: float | None = None) -> Markup:
    """A small horizontal bar for a rate (cache hit rate), with the target as a tick."""
    width = 120
    filled = 0.0 if fraction is None else max(0.0, min(1.0, fraction)) * width
    mark = "" if target is None else (f'<line x1="{target * width:.1f}" x2="{target * width:.1f}" y1="0" y2="14" '
                                      'class="threshold"/>')
    return Markup(  # noqa: S704 - numbers only
        f'<svg class="bar" viewBox="0 0 {width} 14" width="{width}" height="14" xmlns="http://www.w3.org/2000/svg">'
        f'<rect width="{width}" height="14" class="plot"/><rect width="{filled:.1f}" height="14" class="fill"/>'
        f"{mark}</svg>"
    )


def seconds_fmt(v: float) -> str:
    if v >= 3600:
        return f"{v / 3600:.1f} h"
    if v >= 60:
        return f"{v / 60:.0f} min"
    return f"{v:.0f} s"


def pct_fmt(v: float) -> str:
    return f"{v * 100:.0f}%"
