"""Daily usage of a key as a small inline SVG bar chart (no chart library, no CDN)."""

from __future__ import annotations

from decimal import Decimal
from html import escape

from proxy.dashboard.decision_log import DailyUsage
from proxy.dashboard.forms import usd

__all__ = ["daily_usage_svg"]

WIDTH = 560
HEIGHT = 160
AXIS_HEIGHT = 18
TOP_MARGIN = 14


def daily_usage_svg(days: list[DailyUsage]) -> str:
    """An accessible SVG: one bar per day, height proportional to USD spent."""
    if not days:
        return ""
    peak = max((d.cost for d in days), default=Decimal(0))
    slot = WIDTH / len(days)
    plot_height = HEIGHT - AXIS_HEIGHT - TOP_MARGIN
    parts = [
        f'<svg class="usage-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="Daily usage in USD over the last {len(days)} days">'
    ]
    for index, day in enumerate(days):
        ratio = float(day.cost / peak) if peak > 0 else 0.0
        bar_height = round(ratio * plot_height, 1)
        x = round(index * slot + slot * 0.15, 1)
        y = round(TOP_MARGIN + plot_height - bar_height, 1)
        label = escape(f"{day.day.isoformat()}: {usd(day.cost)}")
        parts.append(
            f'<rect x="{x}" y="{y}" width="{round(slot * 0.7, 1)}" height="{bar_height}">'
            f"<title>{label}</title></rect>"
        )
        parts.append(
            f'<text x="{round(index * slot + slot / 2, 1)}" y="{HEIGHT - 4}" '
            f'text-anchor="middle">{day.day.strftime("%d")}</text>'
        )
    parts.append(f'<text x="2" y="10" class="peak">peak {escape(usd(peak))}</text>')
    parts.append("</svg>")
    return "".join(parts)
