"""Reading the rollups: totals, rates, latency percentiles and spend over a range, grouped by a
dimension, and a per-hour or per-day series for the charts."""

from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal

from .models import LATENCY_BOUNDS_MS, METRICS, HourlyRollup

DIMENSIONS = ("workflow", "channel", "tenant", "provider")
SUPPRESSED = ("suppressed_opted_out", "suppressed_quiet_hours", "suppressed_throttled",
              "suppressed_digested", "suppressed_undeliverable", "suppressed_other")


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


class Totals:
    """Sums of rollup rows, with the rates and percentiles derived from them."""

    def __init__(self):
        self.counts = dict.fromkeys(METRICS, 0)
        self.buckets = [0] * (len(LATENCY_BOUNDS_MS) + 1)
        self.cost = Decimal(0)

    def add(self, row: HourlyRollup) -> None:
        for metric in METRICS:
            self.counts[metric] += getattr(row, metric)
        for index, count in enumerate(row.latency_buckets or []):
            self.buckets[index] += count
        self.cost += row.cost

    @staticmethod
    def _rate(part: int, whole: int) -> float | None:
        return part / whole if whole else None

    def as_dict(self) -> dict:
        c = self.counts
        suppressed = sum(c[name] for name in SUPPRESSED)
        return {**c, "suppressed": suppressed,
                "delivery_rate": self._rate(c["delivered"], c["sent"]),
                "read_rate": self._rate(c["read"], c["sent"]),
                "click_rate": self._rate(c["clicked"], c["sent"]),
                "error_rate": self._rate(c["provider_errors"], c["provider_calls"]),
                "latency_p50_ms": percentile(self.buckets, 0.5),
                "latency_p95_ms": percentile(self.buckets, 0.95),
                "estimated_cost": self.cost}


def rollup_report(*, start: datetime, end: datetime, by: str = "workflow",
                  filters: dict | None = None) -> dict:
    """Over [start, end): `total` (a Totals dict), `groups` ({value of `by`: Totals dict},
    largest sent first) and `series` ([(bucket start, Totals dict)], per hour for two days or
    less, else per day). `filters` narrows by DIMENSIONS ({"channel": "email"}). ValueError
    for an unknown dimension."""
    if by not in DIMENSIONS or set(filters or {}) - set(DIMENSIONS):
        raise ValueError(f"group by one of {', '.join(DIMENSIONS)}")
    rows = HourlyRollup.objects.filter(hour__gte=start, hour__lt=end, **(filters or {}))
    daily = end - start > timedelta(days=2)
    total, groups, series = Totals(), defaultdict(Totals), defaultdict(Totals)
    for row in rows.iterator(chunk_size=5000):
        total.add(row)
        groups[getattr(row, by)].add(row)
        moment = row.hour.replace(hour=0) if daily else row.hour
        series[moment].add(row)
    step = timedelta(days=1) if daily else timedelta(hours=1)
    first = start.replace(minute=0, second=0, microsecond=0)
    if daily:
        first = first.replace(hour=0)
    points, moment = [], first
    while moment < end:
        points.append((moment, (series.get(moment) or Totals()).as_dict()))
        moment += step
    ordered = sorted(groups.items(), key=lambda item: -item[1].counts["sent"])
    return {"total": total.as_dict(), "groups": [(key, t.as_dict()) for key, t in ordered],
            "series": points, "daily": daily}
