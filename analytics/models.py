"""Hourly rollups and the deltas the workers write before they are folded in."""

from django.db import models
from django.utils.translation import gettext_lazy as _

# Upper bounds (ms) of the trigger-to-sent latency histogram's buckets; the last is open.
LATENCY_BOUNDS_MS = (100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000,
                     900_000, 3_600_000, 21_600_000, 86_400_000)

# What a delta counts: each is a counter column of HourlyRollup.
METRICS = ("triggered", "sent", "delivered", "failed", "bounced", "suppressed_opted_out",
           "suppressed_quiet_hours", "suppressed_throttled", "suppressed_digested",
           "suppressed_undeliverable", "suppressed_other", "seen", "read", "clicked",
           "provider_calls", "provider_errors")


class RollupDelta(models.Model):
    """One fact not folded into its hour yet (analytics.rollups.rollup_fold)."""

    hour = models.DateTimeField(verbose_name=_("hour"))
    workflow = models.CharField(max_length=128, blank=True, verbose_name=_("workflow"))
    tenant = models.CharField(max_length=128, blank=True, verbose_name=_("tenant"))
    channel = models.CharField(max_length=16, blank=True, verbose_name=_("channel"))
    provider = models.CharField(max_length=128, blank=True, verbose_name=_("provider"))
    metric = models.CharField(max_length=32, verbose_name=_("metric"))
    count = models.PositiveIntegerField(default=1, verbose_name=_("count"))
    latency_ms = models.BigIntegerField(null=True, blank=True, verbose_name=_("latency ms"))
    cost = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True,
                               verbose_name=_("cost"))

    def __str__(self):
        return f"{self.hour:%Y-%m-%d %H}h {self.metric} +{self.count}"


class HourlyRollup(models.Model):
    """Counts of one hour for one (workflow, tenant, channel, provider); keys, not foreign
    keys: a deleted workflow or tenant keeps its history. Empty strings: not applicable (a
    trigger has no channel) or none (no tenant)."""

    hour = models.DateTimeField(verbose_name=_("hour"))
    workflow = models.CharField(max_length=128, blank=True, verbose_name=_("workflow"))
    tenant = models.CharField(max_length=128, blank=True, verbose_name=_("tenant"))
    channel = models.CharField(max_length=16, blank=True, verbose_name=_("channel"))
    provider = models.CharField(max_length=128, blank=True, verbose_name=_("provider"))
    triggered = models.BigIntegerField(default=0, help_text=_("Runs started."),
                                       verbose_name=_("triggered"))
    sent = models.BigIntegerField(default=0, verbose_name=_("sent"))
    delivered = models.BigIntegerField(default=0, verbose_name=_("delivered"))
    failed = models.BigIntegerField(default=0, verbose_name=_("failed"))
    bounced = models.BigIntegerField(default=0, verbose_name=_("bounced"))
    suppressed_opted_out = models.BigIntegerField(default=0, verbose_name=_("suppressed opted out"))
    suppressed_quiet_hours = models.BigIntegerField(default=0,
                                                    verbose_name=_("suppressed quiet hours"))
    suppressed_throttled = models.BigIntegerField(default=0, verbose_name=_("suppressed throttled"))
    suppressed_digested = models.BigIntegerField(default=0, verbose_name=_("suppressed digested"))
    suppressed_undeliverable = models.BigIntegerField(default=0,
                                                      verbose_name=_("suppressed undeliverable"))
    suppressed_other = models.BigIntegerField(default=0, verbose_name=_("suppressed other"))
    seen = models.BigIntegerField(default=0, verbose_name=_("seen"))
    read = models.BigIntegerField(default=0, verbose_name=_("read"))
    clicked = models.BigIntegerField(default=0, verbose_name=_("clicked"))
    provider_calls = models.BigIntegerField(default=0, verbose_name=_("provider calls"))
    provider_errors = models.BigIntegerField(default=0, verbose_name=_("provider errors"))
    latency_count = models.BigIntegerField(default=0, verbose_name=_("latency count"))
    latency_sum_ms = models.BigIntegerField(default=0, verbose_name=_("latency sum ms"))
    cost = models.DecimalField(max_digits=18, decimal_places=6, default=0, verbose_name=_("cost"))

    class Meta:
        verbose_name = _("hourly rollup")
        verbose_name_plural = _("hourly rollups")
        ordering = ["-hour"]
        constraints = [models.UniqueConstraint(
            fields=["hour", "workflow", "tenant", "channel", "provider"],
            name="hourlyrollup_once")]
        indexes = [models.Index(fields=["hour"], name="hourlyrollup_hour_idx")]

    def __str__(self):
        return f"{self.hour:%Y-%m-%d %H}h {self.workflow} {self.channel} {self.provider}"


# The latency histogram: one column per bucket (latency_b00 … latency_b14), so that a range's
# histogram is summed by the database like every other count.
LATENCY_FIELDS = tuple(f"latency_b{index:02d}" for index in range(len(LATENCY_BOUNDS_MS) + 1))
for _index, _name in enumerate(LATENCY_FIELDS):
    _low = LATENCY_BOUNDS_MS[_index - 1] if _index else 0
    _high = LATENCY_BOUNDS_MS[_index] if _index < len(LATENCY_BOUNDS_MS) else None
    HourlyRollup.add_to_class(_name, models.BigIntegerField(
        default=0, help_text=f"Sends with a trigger-to-sent latency from {_low} ms"
                             + (f" up to {_high} ms." if _high else " up.")))
