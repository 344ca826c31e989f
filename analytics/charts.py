"""Charts as server-rendered SVG: no script, nothing fetched from elsewhere."""

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext, pgettext_lazy

WIDTH, HEIGHT, PAD = 720, 220, 36
COLORS = {"sent": "#2563eb", "delivered": "#16a34a", "failed": "#dc2626", "read": "#9333ea",
          "suppressed": "#d97706", "triggered": "#64748b", "clicked": "#0891b2"}
# The metrics' names as the analytics page shows them, in the admin's language.
METRIC_LABELS = {
    "triggered": pgettext_lazy("metric", "triggered"), "sent": pgettext_lazy("metric", "sent"),
    "delivered": pgettext_lazy("metric", "delivered"), "failed": pgettext_lazy("metric", "failed"),
    "bounced": pgettext_lazy("metric", "bounced"),
    "suppressed": pgettext_lazy("metric", "suppressed"), "seen": pgettext_lazy("metric", "seen"),
    "read": pgettext_lazy("metric", "read"), "clicked": pgettext_lazy("metric", "clicked"),
}


def line_chart(series: list[tuple], metrics: tuple[str, ...], *, label_format: str,
               title: str) -> SafeString:
    """An SVG line chart of `metrics` over `series` ([(moment, {metric: value})])."""
    if not series:
        return format_html("<p>{}</p>", gettext("No data."))
    top = max([1, *(point[metric] or 0 for _, point in series for metric in metrics)])
    span = max(len(series) - 1, 1)

    def x(index):
        return PAD + (WIDTH - 2 * PAD) * index / span

    def y(value):
        return HEIGHT - PAD - (HEIGHT - 2 * PAD) * (value or 0) / top

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'width="100%" role="img" aria-label="{escape(title)}" class="clarion-chart">',
             f"<title>{escape(title)}</title>",
             f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
             'stroke="#94a3b8"/>',
             f'<text x="4" y="{PAD}" font-size="11" fill="#475569">{top}</text>',
             f'<text x="4" y="{HEIGHT - PAD}" font-size="11" fill="#475569">0</text>']
    ticks = max(1, len(series) // 8)
    for index, (moment, _) in enumerate(series):
        if index % ticks == 0:
            parts.append(f'<text x="{x(index):.1f}" y="{HEIGHT - PAD + 16}" font-size="10" '
                         f'text-anchor="middle" fill="#475569">'
                         f"{escape(moment.strftime(label_format))}</text>")
    for offset, metric in enumerate(metrics):
        color = COLORS.get(metric, "#334155")
        points = " ".join(f"{x(i):.1f},{y(point[metric]):.1f}"
                          for i, (_, point) in enumerate(series))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" '
                     f'points="{points}" data-metric="{metric}"/>')
        parts.append(f'<text x="{PAD + offset * 90}" y="14" font-size="12" fill="{color}">'
                     f"■ {escape(METRIC_LABELS.get(metric, metric))}</text>")
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every value above is a number or escaped
