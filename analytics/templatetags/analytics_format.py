"""Filters of the analytics page: rates as percentages, milliseconds as durations."""

from django import template

register = template.Library()


@register.filter
def percent(value) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


@register.filter
def duration(ms) -> str:
    if ms is None:
        return "—"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 120_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms / 60_000:.1f} min"
