"""The admin's one search box ("Find a notification"): a recipient id or email, a trigger, run or
message id, an Idempotency-Key or a provider message id. One match opens its page; several are
listed; none says so. The box is in every admin page's header (templates/admin/base_site.html).
"""

from django.contrib import admin
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy

from clarion.admin import admin_url

from .. import support

KINDS = {"recipient": pgettext_lazy("find", "recipient"),
         "trigger": pgettext_lazy("find", "trigger"),
         "run": pgettext_lazy("find", "run"), "message": pgettext_lazy("find", "message")}
MATCHED = {"recipient id": gettext_lazy("recipient id"), "email": gettext_lazy("email"),
           "Idempotency-Key": "Idempotency-Key", "trigger id": gettext_lazy("trigger id"),
           "run id": gettext_lazy("run id"), "message id": gettext_lazy("message id"),
           "provider message id": gettext_lazy("provider message id")}
DESCRIPTIONS = {
    "recipient": lambda obj: f"{obj.external_id} ({obj.email or gettext_lazy('no email')})",
    "trigger": lambda obj: f"{obj.workflow.key}, {obj.created_at:%Y-%m-%d %H:%M:%S} UTC",
    "run": lambda obj: f"{obj.workflow.key} → {obj.recipient.external_id}: {obj.status}",
    "message": lambda obj: _("%(step)s (%(channel)s) to %(recipient)s: %(status)s") % {
        "step": obj.step_ref, "channel": obj.channel, "recipient": obj.recipient.external_id,
        "status": obj.status},
}


def find_view(request):
    """GET ?q=…: redirect to the one row the term names, or list them (only rows of models the
    user may view)."""
    term = request.GET.get("q", "")
    found = [item for item in support.notification_find(term)
             if request.user.has_perm(f"{item.obj._meta.app_label}.view_"
                                      f"{item.obj._meta.model_name}")]
    if len(found) == 1:
        return HttpResponseRedirect(admin_url(found[0].obj))
    results = [{"kind": KINDS.get(item.kind, item.kind),
                "matched": MATCHED.get(item.matched, item.matched), "url": admin_url(item.obj),
                "id": str(item.obj.pk), "description": DESCRIPTIONS[item.kind](item.obj)}
               for item in found]
    context = {**admin.site.each_context(request), "title": _("Find a notification"),
               "term": term, "results": results}
    return TemplateResponse(request, "admin/notifications/find.html", context)
