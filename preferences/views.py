"""Hosted pages reached from emails: the preference center and one-click unsubscribe.

Both work without JavaScript and without an account: the signed token in the URL is the
credential. The preference center is a plain form (CSRF-protected: its GET sets the cookie).
The unsubscribe URL takes RFC 8058's cookie-less POST from mail clients, so it is csrf_exempt,
sets no cookie and is idempotent; its GET only shows a confirm button.
"""

import re

from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from clarion.audit import audit_recipient_bind
from clarion.content_policy import hosted_page
from clarion.locale import language_for
from notifications.models import Recipient, Tenant

from . import selectors, services, tokens
from .models import Category
from .resolution import QuietHours

COLOR = re.compile(r"^#(?:[0-9a-fA-F]{3}){1,2}$")
HH_MM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def _branding(tenant: Tenant | None) -> dict:
    color = tenant.primary_color if tenant and COLOR.match(tenant.primary_color or "") else ""
    return {"name": tenant.name if tenant else "", "logo_url": tenant.logo_url if tenant else "",
            "color": color or "#1f4fd1"}


def _owner(link) -> tuple[Recipient | None, Tenant | None, bool]:
    """The link's recipient and tenant; ok is False when either no longer exists."""
    if link is None:
        return None, None, False
    recipient = Recipient.objects.filter(pk=link.recipient_id).first()
    tenant = Tenant.objects.filter(pk=link.tenant_id).first() if link.tenant_id else None
    ok = recipient is not None and (link.tenant_id is None or tenant is not None)
    return recipient, tenant, ok


def _not_found(request, tenant=None):
    return render(request, "preferences/not_found.html", {"brand": _branding(tenant)},
                  status=404)


def _effective_quiet_hours(recipient, tenant) -> QuietHours | None:
    layers = selectors.preference_layers(recipient=recipient, tenant=tenant)
    return selectors.quiet_hours(layers)


@hosted_page
@never_cache
@require_http_methods(["GET", "POST"])
def center(request, token: str):
    link = tokens.read(token, salt=tokens.CENTER_SALT)
    recipient, tenant, ok = _owner(link)
    if not ok:
        return _not_found(request)
    with translation.override(language_for(recipient.locale)):
        errors = []
        if request.method == "POST":
            errors = _save(request, recipient, tenant)
            if not errors:
                return HttpResponseRedirect(f"{request.path}?saved=1", status=303)
        channels, sections = selectors.preference_center(recipient=recipient, tenant=tenant)
        window = _effective_quiet_hours(recipient, tenant)
        context = {
            "brand": _branding(tenant),
            "recipient": recipient,
            "channels": [(c, selectors.channel_label(c), on) for c, on in channels],
            "sections": [
                {"category": s.category,
                 "category_channels": [(c, selectors.channel_label(c), on)
                                       for c, on in (s.category.channels if s.category else [])],
                 "workflows": [{"row": w, "channels": [(c, selectors.channel_label(c), on)
                                                       for c, on in w.channels]}
                               for w in s.workflows]}
                for s in sections
            ],
            "quiet_start": f"{window.start:%H:%M}" if window else "",
            "quiet_end": f"{window.end:%H:%M}" if window else "",
            "timezone": recipient.timezone or "UTC",
            "saved": request.GET.get("saved") == "1" and not errors,
            "errors": errors,
            "LANGUAGE_CODE": translation.get_language(),
        }
        return render(request, "preferences/center.html", context,
                      status=400 if errors else 200)


def _save(request, recipient, tenant) -> list[str]:
    """Write what the person changed: each toggle that differs from how it resolves now."""
    posted = request.POST
    channels, sections = selectors.preference_center(recipient=recipient, tenant=tenant)
    patch: dict = {"channel_types": {}, "categories": {}, "workflows": {}}
    for channel, on in channels:
        wanted = f"channel:{channel}" in posted
        if wanted != on:
            patch["channel_types"][channel] = wanted
    for section in sections:
        rows = ([section.category] if section.category else []) + section.workflows
        for row in rows:
            for channel, on in row.channels:
                wanted = f"{row.kind}:{row.key}:{channel}" in posted
                if wanted != on:
                    group = patch["categories" if row.kind == "category" else "workflows"]
                    group.setdefault(row.key, {"channel_types": {}})["channel_types"][channel] = \
                        wanted
    start, end = posted.get("quiet_start", "").strip(), posted.get("quiet_end", "").strip()
    window = _effective_quiet_hours(recipient, tenant)
    shown = (f"{window.start:%H:%M}", f"{window.end:%H:%M}") if window else ("", "")
    if (start, end) != shown:
        if not start and not end:
            patch["quiet_hours"] = False
        elif not (HH_MM.match(start) and HH_MM.match(end)) or start == end:
            return [_("Quiet hours need a start and an end time, and they must differ.")]
        else:
            patch["quiet_hours"] = {"start": start, "end": end}
    audit_recipient_bind(recipient.external_id, via="preference center")
    services.preference_set_update(recipient=recipient, tenant=tenant, data=patch, merge=True)
    return []


def _unsubscribe_subject(link) -> str:
    if link.category:
        known = Category.objects.filter(key=link.category).first()
        return known.name if known else link.category.replace("-", " ").title()
    return link.workflow_key


@hosted_page
@csrf_exempt
@never_cache
@require_http_methods(["GET", "POST"])
def unsubscribe(request, token: str):
    """RFC 8058: a POST of `List-Unsubscribe=One-Click` opts out (200, no redirect); GET asks."""
    link = tokens.read(token, salt=tokens.UNSUBSCRIBE_SALT)
    recipient, tenant, ok = _owner(link)
    if not ok:
        return _not_found(request)
    with translation.override(language_for(recipient.locale)):
        context = {"brand": _branding(tenant), "subject": _unsubscribe_subject(link),
                   "preferences_url": tokens.preferences_url(recipient_id=recipient.pk,
                                                             tenant_id=link.tenant_id),
                   "LANGUAGE_CODE": translation.get_language()}
        if request.method == "GET":
            return render(request, "preferences/unsubscribe.html", context)
        if request.POST.get("List-Unsubscribe") != "One-Click":
            return render(request, "preferences/unsubscribe.html",
                          {**context, "error": True}, status=400)
        audit_recipient_bind(recipient.external_id, via="unsubscribe link")
        services.preferences_unsubscribe(recipient=recipient, tenant=tenant,
                                         workflow_key=link.workflow_key, category=link.category)
        return render(request, "preferences/unsubscribed.html", context)
