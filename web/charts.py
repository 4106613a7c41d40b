"""Stacked bar charts as inline SVG, rendered on the server (no chart library, no script)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

from gateway.store.calls import CATEGORIES


def bar_chart(data: Sequence[dict[str, int]], labels: Sequence[str], *, title: str,
              label_every: int = 1, category_names: dict[str, str] | None = None) -> Markup:
    """Render stacked bars (one per bucket) with a y scale, axis labels and hover titles.

    The SVG scales to its container through its viewBox, so it stays readable at 390 px.
    Colours come from CSS classes (`bar-pass`…): the CSP forbids inline style attributes.
    """
    names = category_names or {c: c for c in CATEGORIES}
    width, height = 320.0, 160.0
    left, bottom, top = 24.0, 18.0, 6.0
    plot_h = height - bottom - top
    n = max(1, len(data))
    slot = (width - left) / n
    peak = max([sum(d.values()) for d in data] + [1])
    # An even, round top value so both grid labels are whole: 2, 4, 6, 8, 10, 20, 40...
    top_value, scale = 2, 1
    while top_value < peak:
        for step in (2, 4, 6, 8, 10):
            top_value = step * scale
            if top_value >= peak:
                break
        scale *= 10
    parts = [
        f'<svg class="chart" viewBox="0 0 {width:g} {height:g}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for frac in (0.0, 0.5, 1.0):
        y = top + plot_h * (1 - frac)
        parts.append(f'<line class="grid" x1="{left:g}" x2="{width:g}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{left - 3:g}" y="{y + 3:.1f}" text-anchor="end">'
                     f"{round(top_value * frac):d}</text>")
    for i, bucket in enumerate(data):
        x = left + i * slot + slot * 0.15
        bar_w = max(1.0, slot * 0.7)
        y = top + plot_h
        tip = ", ".join(f"{names[c]}: {bucket.get(c, 0)}" for c in CATEGORIES)
        parts.append(f"<g><title>{escape(labels[i])} — {escape(tip)}</title>")
        for cat in CATEGORIES:
            value = bucket.get(cat, 0)
            if not value:
                continue
            h = plot_h * value / top_value
            y -= h
            parts.append(f'<rect class="bar-{cat}" x="{x:.1f}" y="{y:.1f}" '
                         f'width="{bar_w:.1f}" height="{h:.1f}"/>')
        parts.append("</g>")
        if i % label_every == 0:
            parts.append(f'<text class="axis" x="{x + bar_w / 2:.1f}" y="{height - 5:g}" '
                         f'text-anchor="middle">{escape(labels[i])}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated text is escaped above
