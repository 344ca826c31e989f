"""The analytics page: the rollups over a chosen range, as SVG charts and tables."""

from datetime import UTC, datetime, timedelta

from django.contrib import admin
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import pgettext_lazy

from .charts import METRIC_LABELS, line_chart
from .models import HourlyRollup
from .rollups import rollup_fold_all
from .selectors import DIMENSIONS, rollup_report

DIMENSION_LABELS = {"workflow": pgettext_lazy("dimension", "workflow"),
                    "channel": pgettext_lazy("dimension", "channel"),
                    "tenant": pgettext_lazy("dimension", "tenant"),
                    "provider": pgettext_lazy("dimension", "provider")}


def _day(text: str | None, default: datetime) -> datetime:
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC) if text else default
    except ValueError:
        return default


@admin.register(HourlyRollup)
class AnalyticsAdmin(admin.ModelAdmin):
    """The changelist is the dashboard: ?start=YYYY-MM-DD&end=YYYY-MM-DD&by=workflow and the
    filters workflow, channel, tenant, provider."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        rollup_fold_all()  # what the workers wrote since the last fold
        today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
        start = _day(request.GET.get("start"), today - timedelta(days=6))
        end = _day(request.GET.get("end"), today) + timedelta(days=1)
        by = request.GET.get("by") if request.GET.get("by") in DIMENSIONS else "workflow"
        filters = {name: request.GET[name] for name in DIMENSIONS if request.GET.get(name)}
        report = rollup_report(start=start, end=end, by=by, filters=filters)
        label = "%m-%d" if report["daily"] else "%d %Hh"
        context = {
            **self.admin_site.each_context(request),
            "title": _("Analytics"), "opts": self.model._meta, "report": report, "by": by,
            "by_label": DIMENSION_LABELS[by], "metric": METRIC_LABELS,
            "dimensions": [(name, DIMENSION_LABELS[name]) for name in DIMENSIONS],
            "filters": filters,
            "start": start.date().isoformat(), "end": (end - timedelta(days=1)).date().isoformat(),
            "volume_chart": line_chart(report["series"], ("sent", "delivered", "failed", "read"),
                                       label_format=label, title=_("Messages")),
            "suppressed_chart": line_chart(report["series"], ("triggered", "suppressed"),
                                           label_format=label,
                                           title=_("Runs and suppressions")),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/analytics/dashboard.html", context)
