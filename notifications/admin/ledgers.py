"""The ledgers in the admin, read-only: triggers, runs (each a timeline of its step logs and
messages with their delivery attempts), messages with their status events, delivery attempts,
step logs and idempotency records (each reached from its trigger's page)."""

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, pgettext, pgettext_lazy
from django.views.decorators.http import require_POST

from clarion.admin import (
    EMPTY,
    LIST_LIMIT,
    LedgerAdmin,
    admin_url,
    as_json,
    changelist_url,
    json_display,
    link,
    table,
    when,
)

from .. import services, support
from ..engine.route import NOT_SENT as ROUTE_NOT_SENT
from ..engine.route import winner as route_winner
from ..models import (
    DeliveryAttempt,
    DigestBatch,
    IdempotencyRecord,
    Message,
    Run,
    StepLog,
    Trigger,
)


@admin.register(Trigger)
class TriggerAdmin(LedgerAdmin):
    deletable_by_superusers = True
    list_display = ("id", "workflow", "tenant", "fanout", "created_at")
    list_filter = ("fanout", "workflow", "tenant")
    list_select_related = ("workflow", "tenant")
    search_fields = ("workflow__key__exact", "cancellation_key__exact", "idempotency_key__exact")
    search_help_text = gettext_lazy("A trigger id, a workflow key, a cancellation key or an "
                                    "Idempotency-Key (exact).")
    fields = ("id", "workflow", "tenant", "api_key", "idempotency_key", "created_at", "fanout",
              "cancellation_key",
              "actor_json", "data_json", "recipients_json", "runs")
    readonly_fields = (*fields, "idempotency_record")

    def get_fields(self, request, obj=None):
        """The Idempotency-Key links to its record for those who may read records."""
        fields = super().get_fields(request, obj)
        records = self.admin_site._registry.get(IdempotencyRecord)
        if records is not None and records.has_view_permission(request):
            return tuple("idempotency_record" if name == "idempotency_key" else name
                         for name in fields)
        return fields

    @admin.display(description=gettext_lazy("idempotency key"))
    def idempotency_record(self, obj):
        """The key, linked to the record of the request's first answer while it is kept."""
        if not obj.idempotency_key:
            return EMPTY
        record = support.trigger_idempotency_record(obj)
        if record is None:
            return format_html('{} <span class="help">{}</span>', obj.idempotency_key,
                               _("(its idempotency record is no longer kept)"))
        return format_html('<a href="{}" id="clarion-idempotency-record">{}</a>',
                           admin_url(record), obj.idempotency_key)

    actor_json = json_display("actor", gettext_lazy("actor"))

    data_json = json_display("data", gettext_lazy("data"))

    recipients_json = json_display("recipients", gettext_lazy("recipients"))

    @admin.display(description=gettext_lazy("runs"))
    def runs(self, obj):
        runs = obj.runs.select_related("recipient").order_by("created_at", "id")
        total = runs.count()
        rows = table(
            (_("Run"), _("Recipient"), _("Status"), _("Created")),
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((link(run, str(run.pk)), run.recipient.external_id, run.get_status_display(),
              when(run.created_at)) for run in runs[:LIST_LIMIT]),
        )
        more = format_html('<a href="{}">{}</a>', changelist_url(Run, q=str(obj.pk)),
                           ngettext("All %(count)d run", "All %(count)d runs", total)
                           % {"count": total})
        return format_html("{}<p>{}</p>", rows, more)


def attempts_table(message):
    """Every provider call of the message, of every send (the `Send` column: 1, then one more
    per resend)."""
    attempts = message.delivery_attempts.all()
    if not attempts:
        return _("No delivery attempts.")
    return table(
        (pgettext("the send of a message", "Send"), _("Provider key"), _("Started"),
         _("Status code"), _("Duration (ms)"), _("Outcome"), _("Error")),
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        ((attempt.send_number, link(attempt, attempt.provider), when(attempt.started_at),
          EMPTY if attempt.status_code is None else attempt.status_code,
          EMPTY if attempt.duration_ms is None else attempt.duration_ms,
          attempt.get_outcome_display(), attempt.error or EMPTY)
         for attempt in attempts),
    )


def send_words(message) -> str:
    """Which send of the message is the current one: "1 (never resent)", "2 (resent 1 time)"…"""
    resends = message.send_number - 1
    if not resends:
        return _("%(number)d (never resent)") % {"number": message.send_number}
    return ngettext("%(number)d (resent %(count)d time)", "%(number)d (resent %(count)d times)",
                    resends) % {"number": message.send_number, "count": resends}


def tries_words(message) -> str:
    """What `Message.attempts` counts, beside the provider calls: the delivery passes and the
    calls of the current send, and (after a resend) the calls of every send, which the
    delivery attempts table lists."""
    calls = [attempt.send_number for attempt in message.delivery_attempts.all()]
    current = sum(1 for number in calls if number == message.send_number)
    words = {
        "passes": ngettext("%(count)d delivery pass", "%(count)d delivery passes",
                           message.attempts) % {"count": message.attempts},
        "calls": ngettext("%(count)d provider call", "%(count)d provider calls",
                          current) % {"count": current},
        "total": ngettext("%(count)d provider call", "%(count)d provider calls",
                          len(calls)) % {"count": len(calls)},
        "sends": message.send_number,
    }
    if message.send_number == 1:
        return _("%(passes)s, %(calls)s (the delivery attempts below).") % words
    return _("This send: %(passes)s, %(calls)s. All %(sends)d sends: %(total)s (the delivery "
             "attempts below).") % words


def _linked(obj, text):
    """`text` linked to `obj`'s admin page when the admin shows that model, else plain."""
    if obj is None or type(obj) not in admin.site._registry:
        return text
    return link(obj, text)


def _detail(detail: dict):
    """A timeline entry's facts: plain values inline, objects and lists folded (JSON)."""
    if not detail:
        return EMPTY
    plain = [(name, value) for name, value in detail.items()
             if not isinstance(value, dict | list) and value not in ("", None)]
    nested = [(name, value) for name, value in detail.items() if isinstance(value, dict | list)]
    return format_html(
        "{}{}",
        format_html_join("", '<div><span class="clarion-key">{}</span>: <code>{}</code></div>',
                         plain),
        format_html_join(
            "", '<details><summary>{}</summary><pre style="white-space: pre-wrap">{}</pre>'
                "</details>",
            ((name, as_json(value, indent=2)) for name, value in nested)),
    )


# What the timeline's Kind column says of each kind of entry (its data-kind stays the key).
TIMELINE_KINDS = {
    "trigger": pgettext_lazy("timeline", "trigger"), "step": pgettext_lazy("timeline", "step"),
    "message": pgettext_lazy("timeline", "message"),
    "attempt": pgettext_lazy("timeline", "attempt"),
    "provider event": pgettext_lazy("timeline", "provider event"),
    "engagement": pgettext_lazy("timeline", "engagement"),
}


def run_timeline(run):
    """Everything that happened to the run, in time order (notifications.support.run_timeline:
    the trigger, StepLogs, messages, provider calls, provider events, engagement, and what other
    features add to its sources), one row each."""
    entries = support.run_timeline(run)
    return format_html(
        '<table id="clarion-timeline"><thead><tr><th scope="col">{}</th><th scope="col">{}</th>'
        '<th scope="col">{}</th><th scope="col">{}</th><th scope="col">{}</th></tr></thead>'
        "<tbody>{}</tbody></table>",
        _("Time"), _("Kind"), _("Step"), _("What"), _("Detail"),
        format_html_join(
            "", '<tr class="clarion-{}" data-kind="{}"><td>{}</td><td>{}</td><td>{}</td>'
                "<td>{}</td><td>{}</td></tr>",
            ((entry.kind.replace(" ", "-"), entry.kind, when(entry.at),
              TIMELINE_KINDS.get(entry.kind, entry.kind),
              entry.step_ref or EMPTY, _linked(entry.obj, entry.title), _detail(entry.detail))
             for entry in entries)),
    )


def digest_batches(run):
    """Each digest batch the run joined: its state, why it closed, the run that carried it, and
    every run that joined it (oldest event first) with what became of its event."""
    batches = (DigestBatch.objects.filter(events__run=run).distinct()
               .select_related("carrier").order_by("opened_at"))
    if not batches:
        return _("Not in a digest.")
    parts = []
    for batch in batches:
        closed = (_("closed %(at)s: %(reason)s") % {
                      "at": when(batch.closed_at), "reason": batch.get_close_reason_display()}
                  if batch.status == DigestBatch.Status.CLOSED
                  else _("open, closes %(at)s") % {"at": when(batch.closes_at)})
        events = batch.events.select_related("run").order_by("at", "id")[:LIST_LIMIT]
        parts.append(format_html(
            '<div class="clarion-digest" data-batch="{}"><p>{}</p>{}</div>', batch.pk, format_html(
                _("Step <b>{step}</b>, key {key}: {count} events, opened {opened}, {closed}. "
                  "Carried by: {carrier}."),
                step=batch.step_ref, key=as_json(batch.key_value), count=batch.event_count,
                opened=when(batch.opened_at), closed=closed,
                carrier=link(batch.carrier, _("this run") if batch.carrier_id == run.pk
                             else None)),
            table((_("Run"), _("Triggered"), _("Event"), _("Data")),
                  "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                  ((link(event.run, _("this run") if event.run_id == run.pk else None),
                    when(event.at), event.get_outcome_display(), as_json(event.data))
                   for event in events))))
    return format_html_join("", "{}", ((part,) for part in parts))


def route_summary(run):
    """Each route step of the run: the channel that won (the first message to reach the
    route's success state), what it sent and what it passed over."""
    routes = (run.state or {}).get("routes") or {}
    if not routes:
        return EMPTY
    started = {log.step_ref: log.detail for log in run.step_logs.filter(
        event=StepLog.Event.STARTED, step_ref__in=list(routes))}
    messages = {}
    for message in run.messages.filter(step_ref__in=list(routes)).order_by("created_at", "id"):
        messages.setdefault(message.step_ref, []).append(message)
    rows = []
    for ref, state in routes.items():
        success = started.get(ref, {}).get("success", "")
        sent = messages.get(ref, [])
        won = route_winner(sent, success) if success else None
        if won is not None:
            outcome = format_html(_("won by <strong>{channel}</strong> ({state} at {at})"),
                                  channel=won[0].get_channel_display(), state=success,
                                  at=when(won[1]))
        else:
            outcome = _("no channel has reached %(state)s yet") % {
                "state": success or _("success")}
        rows.append((ref, outcome, ", ".join(m.channel for m in sent
                                             if m.status not in ROUTE_NOT_SENT) or EMPTY,
                     ", ".join(state.get("passed", [])) or EMPTY))
    return table((_("Route"), _("Winner"), _("Sent"), _("Passed over")),
                 "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows)


@admin.register(Run)
class RunAdmin(LedgerAdmin):
    deletable_by_superusers = True
    uuid_search_fields = ("pk", "trigger_id")
    list_display = ("id", "workflow", "recipient", "tenant", "status", "created_at", "updated_at")
    list_filter = ("status", "workflow", "tenant")
    list_select_related = ("workflow", "recipient", "tenant")
    search_fields = ("recipient__external_id__exact", "workflow__key__exact")
    search_help_text = gettext_lazy("A recipient id, a workflow key, or a run or trigger id "
                                    "(exact).")
    fields = ("id", "status", "workflow", "version", "recipient", "tenant", "trigger", "cursor",
              "wake_at", "created_at", "updated_at", "routes", "timeline", "digests",
              "state_json")
    readonly_fields = fields

    @admin.display(description=gettext_lazy("workflow version"))
    def version(self, obj):
        """The workflow's version published when the run began, linking to what it said."""
        version = obj.workflow_version
        if version is None:
            return EMPTY
        return format_html('<a href="{}">v{}</a>', reverse(
            "admin:notifications_workflow_version", args=[version.workflow_id, version.number]),
            version.number)

    @admin.display(description=gettext_lazy("timeline"))
    def timeline(self, obj):
        return run_timeline(support.run_for_timeline(obj.pk))

    @admin.display(description=gettext_lazy("digests"))
    def digests(self, obj):
        return digest_batches(obj)

    @admin.display(description=gettext_lazy("routes"))
    def routes(self, obj):
        return route_summary(obj)

    state_json = json_display("state", gettext_lazy("state"))


@admin.register(Message)
class MessageAdmin(LedgerAdmin):
    uuid_search_fields = ("pk", "run_id", "run__trigger_id")
    list_display = ("id", "channel", "status", "to", "workflow", "step_ref", "recipient",
                    "provider", "created_at")
    list_filter = ("status", "channel", "workflow", "tenant", "provider")
    list_select_related = ("workflow", "recipient")
    search_fields = ("recipient__external_id__exact", "workflow__key__exact",
                     "provider_message_id__exact")
    search_help_text = gettext_lazy("A recipient id, a workflow key, a provider message id, or "
                                    "a message, run or trigger id (exact).")
    fields = ("id", "status", "channel", "workflow", "step_ref", "recipient", "tenant", "run",
              "to", "provider", "provider_message_id", "template_version", "send", "tries",
              "next_attempt_at", "error", "created_at", "sent_at", "delivered_at", "seen_at",
              "read_at", "opened_at", "clicked_at", "bounced_at", "complained_at", "content_json",
              "delivery_attempts", "status_events")
    readonly_fields = fields
    actions = ("resend",)

    content_json = json_display("content", gettext_lazy("content"))

    def has_resend_permission(self, request):
        return request.user.has_perm("notifications.resend_message")

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if (obj is not None and obj.status in services.RESENDABLE
                and self.has_resend_permission(request)):
            return ("resend_button", *fields)
        return fields

    def get_readonly_fields(self, request, obj=None):
        return ("resend_button", *super().get_readonly_fields(request, obj))

    @admin.display(description=gettext_lazy("resend"))
    def resend_button(self, obj):
        return format_html(
            '<button type="submit" class="button" formaction="{}" formmethod="post" '
            'id="clarion-resend">{}</button>',
            reverse("admin:notifications_message_resend", args=[obj.pk]),
            _("Resend this message"))

    def get_urls(self):
        return [path("<path:object_id>/resend/",
                     self.admin_site.admin_view(require_POST(self.resend_view)),
                     name="notifications_message_resend"),
                *super().get_urls()]

    def resend_view(self, request, object_id):
        """POST: resend this failed message (the button on its page), then show it again."""
        message = self.get_object(request, unquote(object_id))
        if message is None or not self.has_resend_permission(request):
            raise PermissionDenied
        if services.message_resend(message=message, by=request.user.get_username()):
            self.message_user(request, _("Queued the message to be sent again."),
                              messages.SUCCESS)
        else:
            self.message_user(request, _(
                "Only a failed or undeliverable message is resent: this one is %(status)s.") % {
                    "status": message.get_status_display().lower()}, messages.WARNING)
        return HttpResponseRedirect(reverse("admin:notifications_message_change",
                                            args=[message.pk]))

    @admin.action(description=gettext_lazy("Resend the selected failed messages"),
                  permissions=["resend"])
    def resend(self, request, queryset):
        """Queue failed and undeliverable messages again (services.message_resend); others are
        left alone and counted."""
        resent = skipped = 0
        for message in queryset.select_related(None).only("pk"):
            if services.message_resend(message=message, by=request.user.get_username()):
                resent += 1
            else:
                skipped += 1
        self.message_user(request, ngettext("Queued %(count)d message to be sent again.",
                                            "Queued %(count)d messages to be sent again.",
                                            resent) % {"count": resent},
                          messages.SUCCESS if resent else messages.WARNING)
        if skipped:
            self.message_user(request, ngettext(
                "Left %(count)d message alone: only failed or undeliverable messages are resent.",
                "Left %(count)d messages alone: only failed or undeliverable messages are "
                "resent.", skipped) % {"count": skipped}, messages.WARNING)

    @admin.display(description=pgettext_lazy("the send of a message", "send"))
    def send(self, obj):
        return send_words(obj)

    @admin.display(description=gettext_lazy("tries of the current send"))
    def tries(self, obj):
        return tries_words(obj)

    @admin.display(description=gettext_lazy("delivery attempts"))
    def delivery_attempts(self, obj):
        return attempts_table(obj)

    @admin.display(description=gettext_lazy("status events"))
    def status_events(self, obj):
        """What the provider reported after sending (webhooks), with its raw payload."""
        events = obj.events.order_by("occurred_at", "id")
        if not events:
            return _("No status events.")
        return table(
            (_("Time"), _("Provider kind"), _("Event"), _("Description"), _("Payload")),
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            ((when(event.occurred_at), event.provider_kind, event.get_kind_display(),
              event.description or EMPTY, as_json(event.raw))
             for event in events),
        )


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(LedgerAdmin):
    uuid_search_fields = ("message_id",)
    list_display = ("message", "provider", "started_at", "duration_ms", "outcome", "status_code")
    list_filter = ("outcome", "provider", "provider_kind")
    list_select_related = ("message__recipient",)
    search_fields = ("provider__exact",)
    search_help_text = gettext_lazy("A message id or a provider key (exact).")
    fields = ("message", "send_number", "provider", "provider_kind", "started_at", "duration_ms",
              "outcome", "status_code", "error", "request_json", "response_json")
    readonly_fields = fields

    request_json = json_display("request", gettext_lazy("request"))

    response_json = json_display("response", gettext_lazy("response"))


@admin.register(StepLog)
class StepLogAdmin(LedgerAdmin):
    uuid_search_fields = ("run_id",)
    list_display = ("created_at", "run", "step_ref", "event")
    list_filter = ("event",)
    list_select_related = ("run__workflow", "run__recipient")
    search_fields = ("step_ref__exact",)
    search_help_text = gettext_lazy("A run id or a step ref (exact).")
    fields = ("run", "step_ref", "event", "created_at", "detail_json")
    readonly_fields = fields

    detail_json = json_display("detail", gettext_lazy("detail"))


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(LedgerAdmin):
    deletable_by_superusers = True
    list_display = ("key", "api_key", "response_status", "created_at")
    list_filter = ("response_status",)
    list_select_related = ("api_key",)
    search_fields = ("key__exact",)
    fields = ("key", "trigger", "api_key", "request_hash", "response_status", "created_at",
              "response_json")
    readonly_fields = fields

    @admin.display(description=gettext_lazy("trigger"))
    def trigger(self, obj):
        """The trigger the record's answer names (its page), when there is one."""
        return link(support.idempotency_record_trigger(obj))

    response_json = json_display("response_body", gettext_lazy("response body"))
