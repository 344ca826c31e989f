"""Reading the rollups: totals, rates, latency percentiles and spend over a range, grouped by a
dimension, and a per-hour or per-day series for the charts. The database sums the rows (three
aggregate queries on the hour index); Python only derives rates and percentiles."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db.models import Sum
from django.db.models.functions import TruncDay, TruncHour

from .models import LATENCY_BOUNDS_MS, LATENCY_FIELDS, METRICS, HourlyRollup

DIMENSIONS = ("workflow", "channel", "tenant", "provider")
SUPPRESSED = ("suppressed_opted_out", "suppressed_quiet_hours", "suppressed_throttled",
              "suppressed_digested", "suppressed_undeliverable", "suppressed_other")
SUMMED = (*METRICS, *LATENCY_FIELDS, "cost")


def percentile(buckets: list[int], q: float) -> float | None:
    """The q-quantile (0..1) of a latency histogram, in ms, interpolated linearly inside its
    bucket (the open last bucket reports its lower bound). None when it is empty."""
    total = sum(buckets)
    if not total:
        return None
    rank, seen = q * total, 0
    for index, count in enumerate(buckets):
        if count and seen + count >= rank:
            low = LATENCY_BOUNDS_MS[index - 1] if index else 0
            if index >= len(LATENCY_BOUNDS_MS):
                return float(low)
            return low + (LATENCY_BOUNDS_MS[index] - low) * (rank - seen) / count
        seen += count
    return float(LATENCY_BOUNDS_MS[-1])


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def totals(sums: dict) -> dict:
    """The counts of summed rollup rows, with the rates, percentiles and spend derived."""
    c = {metric: sums.get(metric) or 0 for metric in METRICS}
    buckets = [sums.get(name) or 0 for name in LATENCY_FIELDS]
    return {**c, "suppressed": sum(c[name] for name in SUPPRESSED),
            "delivery_rate": _rate(c["delivered"], c["sent"]),
            "read_rate": _rate(c["read"], c["sent"]),
            "click_rate": _rate(c["clicked"], c["sent"]),
            "error_rate": _rate(c["provider_errors"], c["provider_calls"]),
            "latency_p50_ms": percentile(buckets, 0.5),
            "latency_p95_ms": percentile(buckets, 0.95),
            "estimated_cost": sums.get("cost") or Decimal(0)}


def rollup_report(*, start: datetime, end: datetime, by: str = "workflow",
                  filters: dict | None = None) -> dict:
    """Over [start, end): `total` (a totals dict), `groups` ([(value of `by`, totals)],
    largest sent first) and `series` ([(bucket start, totals)], per hour for two days or less,
    else per day, every bucket present). `filters` narrows by DIMENSIONS ({"channel":
    "email"}). ValueError for an unknown dimension."""
    if by not in DIMENSIONS or set(filters or {}) - set(DIMENSIONS):
        raise ValueError(f"group by one of {', '.join(DIMENSIONS)}")
    rows = HourlyRollup.objects.filter(hour__gte=start, hour__lt=end,
                                       **(filters or {})).order_by()
    sums = {name: Sum(name) for name in SUMMED}
    daily = end - start > timedelta(days=2)
    total = totals(rows.aggregate(**sums))
    groups = sorted(((row[by], totals(row)) for row in rows.values(by).annotate(**sums)),
                    key=lambda item: -item[1]["sent"])
    trunc = TruncDay("hour", tzinfo=UTC) if daily else TruncHour("hour", tzinfo=UTC)
    by_moment = {row["moment"]: totals(row)
                 for row in rows.annotate(moment=trunc).values("moment").annotate(**sums)}
    step = timedelta(days=1) if daily else timedelta(hours=1)
    moment = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if daily:
        moment = moment.replace(hour=0)
    points = []
    while moment < end:
        points.append((moment, by_moment.get(moment) or totals({})))
        moment += step
    return {"total": total, "groups": groups, "series": points, "daily": daily}
