"""Small server-rendered SVG charts for the dashboard (no JavaScript, no chart library)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

W, H = 560, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 24, 32
COLORS = ["#2457c5", "#d9480f", "#2b8a3e", "#862e9c"]


@dataclass(frozen=True)
class Series:
    name: str
    xs: Sequence[float]
    ys: Sequence[float | None]
    # An interval around each y (a shaded band; None where there is none), e.g. a Wilson 95 %.
    low: Sequence[float | None] | None = None
    high: Sequence[float | None] | None = None


def _step(lo: float, hi: float, n: int = 4, whole: bool = False) -> float:
    """A "nice" tick step (1, 2 or 5 times a power of ten) giving about ``n`` intervals."""
    raw = (hi - lo) / n
    power = 10.0 ** math.floor(math.log10(raw))
    # The candidate whose interval count is nearest ``n`` (ties: the larger step).
    candidates = [m * power for m in (1, 2, 5, 10)]
    step = min(candidates, key=lambda c: (abs((hi - lo) / c - n), -c))
    return max(step, 1.0) if whole else step


def _ticks(lo: float, hi: float, n: int = 4, whole: bool = False) -> list[float]:
    """Ticks at multiples of a nice step inside [lo, hi] (``whole``: whole numbers only)."""
    if hi <= lo:
        return [lo]
    step = _step(lo, hi, n, whole)
    first = math.ceil(lo / step - 1e-9)
    last = math.floor(hi / step + 1e-9)
    return [round(k * step, 12) for k in range(first, last + 1)]


def _fmt(v: float, step: float = 1.0) -> str:
    """``v`` with as many decimals as the tick step needs (0.01 steps: two)."""
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 2
    return f"{v:.{decimals}f}"


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    y_range: tuple[float, float] | None = None,
    hline: tuple[float, str] | None = None,
) -> SafeString:
    """A line chart of one or more series (points with y None are skipped), each with its
    interval as a shaded band when it has one. Ticks are at nice steps (1, 2 or 5 times a
    power of ten); without ``y_range`` the y axis is widened to whole steps."""
    points = [(x, y) for s in series for x, y in zip(s.xs, s.ys, strict=True) if y is not None]
    if not points:
        return format_html('<p class="empty">{}: no data yet.</p>', title)
    xs = [p[0] for p in points]
    ys = [p[1] for p in points] + ([hline[0]] if hline else [])
    ys += [v for s in series for v in (*(s.low or ()), *(s.high or ())) if v is not None]
    x0, x1 = min(xs), max(xs)
    if x0 == x1:
        x0, x1 = x0 - 1, x1 + 1
    y0, y1 = y_range if y_range else (min(ys), max(ys))
    if y0 == y1:
        y0, y1 = y0 - 1, y1 + 1
    y_step = _step(y0, y1)
    if not y_range:
        y0, y1 = math.floor(y0 / y_step + 1e-9) * y_step, math.ceil(y1 / y_step - 1e-9) * y_step

    def sx(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * (W - LEFT - RIGHT)

    def sy(y: float) -> float:
        return H - BOTTOM - (y - y0) / (y1 - y0) * (H - TOP - BOTTOM)

    parts = [
        f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" class="chart" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<text x="{LEFT}" y="15" class="chart-title">{escape(title)}</text>',
    ]
    for t in _ticks(y0, y1):
        parts.append(
            f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" class="grid"/>'
            f'<text x="{LEFT - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{_fmt(t, y_step)}</text>'
        )
    whole = all(float(x).is_integer() for x in xs)  # counts (labels): whole-number ticks only
    x_step = _step(x0, x1, whole=whole)
    for t in _ticks(x0, x1, whole=whole):
        parts.append(
            f'<text x="{sx(t):.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">'
            f"{_fmt(t, x_step)}</text>"
        )
    parts.append(
        f'<text x="{(LEFT + W - RIGHT) / 2:.0f}" y="{H - 4}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    if hline:
        parts.append(
            f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{sy(hline[0]):.1f}" y2="{sy(hline[0]):.1f}" '
            f'class="threshold"/><text x="{W - RIGHT}" y="{sy(hline[0]) - 4:.1f}" '
            f'text-anchor="end" class="threshold-label">{escape(hline[1])}</text>'
        )
    for i, s in enumerate(series):
        color = COLORS[i % len(COLORS)]
        pts = [(sx(x), sy(y)) for x, y in zip(s.xs, s.ys, strict=True) if y is not None]
        if not pts:
            continue
        if s.low is not None and s.high is not None:
            band = [
                (sx(x), sy(lo), sy(hi))
                for x, lo, hi in zip(s.xs, s.low, s.high, strict=True)
                if lo is not None and hi is not None
            ]
            if band:
                edge = [f"{x:.1f},{y:.1f}" for x, y, _ in band]
                edge += [f"{x:.1f},{y:.1f}" for x, _, y in reversed(band)]
                parts.append(
                    f'<polygon points="{" ".join(edge)}" fill="{color}" fill-opacity="0.15" '
                    f'stroke="none" class="band"/>'
                )
                parts += [  # error bars, so a single point shows its interval too
                    f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{lo:.1f}" y2="{hi:.1f}" '
                    f'stroke="{color}" stroke-opacity="0.5" class="error-bar"/>'
                    for x, lo, hi in band
                ]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}"/>' for x, y in pts]
        parts.append(
            f'<text x="{W - RIGHT}" y="{15 + 14 * i}" text-anchor="end" fill="{color}">'
            f"{escape(s.name)}</text>"
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every interpolated string above is escaped


def bar_chart(counts: Sequence[tuple[str, int]], *, title: str) -> SafeString:
    """Horizontal bars, one per category."""
    if not counts or not any(c for _, c in counts):
        return format_html('<p class="empty">{}: no data yet.</p>', title)
    top = max(c for _, c in counts)
    row, width = 24, W - 160
    height = TOP + row * len(counts) + 8
    parts = [
        f'<svg viewBox="0 0 {W} {height}" width="{W}" height="{height}" role="img" class="chart"'
        f' aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<text x="0" y="15" class="chart-title">{escape(title)}</text>',
    ]
    for i, (name, count) in enumerate(counts):
        y = TOP + row * i
        length = width * count / top if top else 0
        parts.append(
            f'<text x="110" y="{y + 15}" text-anchor="end">{escape(name)}</text>'
            f'<rect x="118" y="{y + 3}" width="{length:.1f}" height="{row - 8}" '
            f'fill="{COLORS[0]}"/>'
            f'<text x="{124 + length:.1f}" y="{y + 15}">{count}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every interpolated string above is escaped
