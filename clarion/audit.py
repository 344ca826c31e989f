"""The audit log: who changed workflows, templates, providers, tenants, API keys and preferences,
when, from which address, through the admin (a user) or the server API (an API key), with the
values before and after and credentials masked.

django-auditlog writes the entries (its `LogEntry`, from model signals; the models and fields it
tracks are `AUDITLOG_INCLUDE_TRACKING_MODELS` in clarion/settings.py) and its middleware names
the admin user. The server API authenticates inside DRF, after every middleware: its
authentication calls `audit_api_key_bind`, and `log_entry_api_key` (connected to LogEntry's
`pre_save` in `ClarionConfig.ready`) writes that key into the entry's `additional_data`:
`{"api_key": {"id": 3, "name": "backend", "prefix": "ck_1a2b3c4d"}}`. A person who changes their
own preferences (the inbox API, the preference center, a one-click unsubscribe) is named the same
way by `audit_recipient_bind`: `{"recipient": {"id": "user-42", "via": "preference center"}}`.
"""

from contextvars import ContextVar

MASK = "••••••••"

# The API key of the request being served, in a holder the middleware renews per request (a
# thread that serves the next request must not keep the last one's key).
_request_holder: ContextVar[dict | None] = ContextVar("clarion_audit_request", default=None)


def mask(value: str) -> str:
    """AUDITLOG_MASK_CALLABLE: a credential is shown as set or not set, never any of its text
    (auditlog's default keeps half of it). Takes the value as text; returns MASK or ""."""
    return MASK if value not in ("", "None") else ""


class AuditRequestMiddleware:
    """Gives each request its own holder for the API key that makes its changes."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _request_holder.set({})
        try:
            return self.get_response(request)
        finally:
            _request_holder.reset(token)


def audit_api_key_bind(api_key) -> None:
    """Record `api_key` (an ApiKey) as the actor of the changes this request makes. Outside a
    request (no AuditRequestMiddleware around it) it does nothing."""
    holder = _request_holder.get()
    if holder is not None:
        holder["api_key"] = {"id": api_key.pk, "name": api_key.name, "prefix": api_key.prefix}


def audit_recipient_bind(recipient_id: str, *, via: str) -> None:
    """Record the recipient `recipient_id` (their own id) as the actor of the changes this
    request makes, `via` what ("inbox API", "preference center", "unsubscribe link"). Outside a
    request it does nothing."""
    holder = _request_holder.get()
    if holder is not None:
        holder["recipient"] = {"id": recipient_id, "via": via}


def log_entry_api_key(sender, instance, **kwargs) -> None:
    """pre_save of auditlog's LogEntry: a new entry made while an API key (or a recipient) acts
    names it in the entry's additional_data."""
    holder = _request_holder.get()
    if instance.pk is None and holder:
        actors = {name: holder[name] for name in ("api_key", "recipient") if holder.get(name)}
        if actors:
            instance.additional_data = {**(instance.additional_data or {}), **actors}
