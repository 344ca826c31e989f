"""Schedules in the admin: the repeat rule as form fields (frequency, time, days, day of month),
saved through `schedules.schedule_put` so their time zones and wake-ups follow."""

from django import forms
from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from clarion.admin import ClarionAdmin

from .. import schedules
from ..models import Schedule
from ..recurrence import DAYS, FREQUENCIES, RepeatError, validate_repeat, zone

FREQUENCY_LABELS = {"hourly": _("hourly"), "daily": _("daily"), "weekly": _("weekly"),
                    "monthly": _("monthly")}
DAY_LABELS = {"mon": _("Monday"), "tue": _("Tuesday"), "wed": _("Wednesday"),
              "thu": _("Thursday"), "fri": _("Friday"), "sat": _("Saturday"), "sun": _("Sunday")}


class ScheduleForm(forms.ModelForm):
    frequency = forms.ChoiceField(choices=[(f, FREQUENCY_LABELS.get(f, f)) for f in FREQUENCIES],
                                  label=_("Frequency"))
    at = forms.CharField(initial="09:00", label=_("At"),
                         help_text=_('Local time "HH:MM" (hourly: its minute).'))
    days = forms.MultipleChoiceField(choices=[(d, DAY_LABELS.get(d, d)) for d in DAYS],
                                     required=False,
                                     widget=forms.CheckboxSelectMultiple, label=_("Days"),
                                     help_text=_("Weekly: the days. Daily/hourly: only these."))
    day_of_month = forms.IntegerField(min_value=1, max_value=31, required=False,
                                      label=_("Day of month"),
                                      help_text=_("Monthly: the day (the last day when "
                                                  "shorter)."))

    class Meta:
        model = Schedule
        fields = ("key", "workflow", "tenant", "recipients", "topic", "data", "frequency", "at",
                  "days", "day_of_month", "timezone", "starts_at", "ends_at", "active")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        repeat = self.instance.repeat if self.instance.pk else None
        if repeat:
            for name in ("frequency", "at", "days", "day_of_month"):
                self.initial[name] = repeat.get(name)

    def clean_timezone(self):
        value = self.cleaned_data["timezone"]
        if value != schedules.RECIPIENT_TIMEZONE and zone(value).key != value:
            raise forms.ValidationError(_('"recipient" or an IANA name like "Europe/Paris".'))
        return value

    def clean(self):
        data = super().clean()
        try:
            data["repeat"] = validate_repeat({
                "frequency": data.get("frequency"), "at": data.get("at") or "00:00",
                "days": data.get("days") or [], "day_of_month": data.get("day_of_month")})
        except RepeatError as exc:
            self.add_error(exc.field if exc.field in self.fields else None, exc.message)
        if bool(data.get("recipients")) == bool(data.get("topic")):
            self.add_error("recipients", _("Give either recipients (a list of ids) or a topic."))
        return data


@admin.register(Schedule)
class ScheduleAdmin(ClarionAdmin):
    form = ScheduleForm
    list_display = ("key", "workflow", "tenant", "topic", "timezone", "active", "updated_at")
    list_filter = ("active", "tenant")
    list_select_related = ("workflow", "tenant", "topic")
    search_fields = ("key", "workflow__key")
    autocomplete_fields = ("workflow", "tenant", "topic")

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        saved, _ = schedules.schedule_put(
            key=data["key"], workflow=data["workflow"], repeat=data["repeat"],
            recipients=data.get("recipients") or [], topic=data.get("topic"),
            data=data.get("data") or {}, tenant=data.get("tenant"), timezone=data["timezone"],
            starts_at=data.get("starts_at"), ends_at=data.get("ends_at"),
            active=data.get("active", True))
        obj.pk = saved.pk
