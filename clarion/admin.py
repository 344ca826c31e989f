"""The bases every app's admin builds on: `ClarionAdmin`, read-only `LedgerAdmin`, the form and
search mixins, and the display helpers (links, timestamps to the millisecond, JSON, tables).

This module registers nothing; `notifications.admin`, `inbox.admin` and `preferences.admin` do.
"""

import json
import uuid

from django import forms
from django.contrib import admin
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

LIST_LIMIT = 100  # rows a detail page lists before linking to the filtered changelist
EMPTY = "—"


# --- Display helpers --------------------------------------------------------------------------

def admin_url(obj, view: str = "change") -> str:
    """The admin URL of a saved row's `view` page ("change", "delete", "history")."""
    meta = obj._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}", args=[obj.pk])


def changelist_url(model, **params) -> str:
    """The admin list of `model`, filtered by `params` as query parameters (`q=…`, `x__exact=…`)."""
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    return f"{url}?{urlencode(params)}" if params else url


def link(obj, text=None):
    """An escaped link to `obj`'s change page, showing `text` (default `str(obj)`); "—" for None."""
    if obj is None:
        return EMPTY
    return format_html('<a href="{}">{}</a>', admin_url(obj), str(obj) if text is None else text)


def when(moment) -> str:
    """A moment to the millisecond, in the current time zone: timelines need that precision."""
    if moment is None:
        return EMPTY
    local = timezone.localtime(moment)
    return f"{local:%Y-%m-%d %H:%M:%S}.{local.microsecond // 1000:03d} {local:%Z}"


def as_json(value, *, indent: int | None = None) -> str:
    """`value` as JSON text with sorted keys, non-ASCII kept, dates and UUIDs as strings."""
    return json.dumps(value, indent=indent, ensure_ascii=False, sort_keys=True,
                      cls=DjangoJSONEncoder)


def json_display(field: str, description: str | None = None):
    """A read-only admin column showing a JSON field, indented: `json_display("data")`."""

    @admin.display(description=description or field)
    def show(self, obj):
        return pretty_json(getattr(obj, field))

    return show


def pretty_json(value):
    """`value` as indented JSON in an escaped, wrapping <pre>."""
    return format_html('<pre style="margin: 0; white-space: pre-wrap">{}</pre>',
                       as_json(value, indent=2))


def table(headers, rows_format: str, rows) -> str:
    """An escaped HTML table: `rows` are tuples of values (escaped) or format_html results."""
    head = format_html_join("", "<th>{}</th>", ((header,) for header in headers))
    body = format_html_join("", rows_format, rows)
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body)


def adopt(target, source) -> None:
    """Make the admin's unsaved `target` the row a service saved, so the admin logs and
    redirects to it."""
    for field in source._meta.concrete_fields:
        setattr(target, field.attname, getattr(source, field.attname))
    target._state.adding = False
    target._state.db = source._state.db


def as_uuid(term: str) -> uuid.UUID | None:
    """The UUID a search term spells (surrounding spaces ignored), or None."""
    try:
        return uuid.UUID(term.strip())
    except ValueError:
        return None


# --- Base classes -----------------------------------------------------------------------------

class DefaultingJSONField(forms.JSONField):
    """An emptied JSON box means the field's default ({} or []), not a NULL the column refuses."""

    def __init__(self, *, default=dict, **kwargs):
        self.default = default
        super().__init__(**kwargs)

    def to_python(self, value):
        python = super().to_python(value)
        return self.default() if python is None and not self.disabled else python


class FormFieldsMixin:
    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if isinstance(db_field, models.URLField):
            kwargs.setdefault("assume_scheme", "https")
        if isinstance(db_field, models.JSONField) and not db_field.null:
            default = db_field.default if callable(db_field.default) else dict
            kwargs.setdefault("form_class", DefaultingJSONField)
            kwargs.setdefault("default", default)
        return super().formfield_for_dbfield(db_field, request, **kwargs)


class ClarionAdmin(FormFieldsMixin, admin.ModelAdmin):
    # Rows deleted only with the row they belong to (ledgers; a workflow's steps), never on
    # their own: deleting their owner needs no delete permission on them.
    deleted_with_owner = False

    def get_deleted_objects(self, objs, request):
        """Ledger rows go with the row they belong to: deleting a recipient erases their runs and
        messages, deleting a template its versions, deleting a workflow its steps. That needs no
        permission on them, as they cannot be deleted on their own."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        owned = {model._meta.verbose_name
                 for model, model_admin in self.admin_site._registry.items()
                 if getattr(model_admin, "deleted_with_owner", False)}
        return deleted, counts, perms_needed - owned, protected


class UUIDSearchMixin:
    """A search term that is a UUID also matches these fields exactly (run, trigger, message ids).

    Text lookups (icontains) on UUID columns are slow and differ between databases.
    """

    uuid_search_fields: tuple[str, ...] = ("pk",)

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        value = as_uuid(search_term) if search_term else None
        if value is None:
            return results, may_have_duplicates
        match = Q()
        for name in self.uuid_search_fields:
            match |= Q(**{name: value})
        return results | queryset.filter(match), may_have_duplicates


class LedgerAdmin(UUIDSearchMixin, ClarionAdmin):
    """Rows the engine writes: shown, never added or changed by hand."""

    deleted_with_owner = True

    deletable_by_superusers = False
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return (self.deletable_by_superusers and request.user.is_superuser
                and super().has_delete_permission(request, obj))
