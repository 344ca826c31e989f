"""The template editor of the admin: templates with their versions (the editor's form,
preview, variables and diff are in template_editor.py; layouts in layouts.py).

Beside the fields: a live preview of each channel rendered with the workflow's sample data,
syntax errors and unknown variables with their lines, the variables a template may read, and
"send a test to me". Versions can be compared side by side, published and rolled back.
"""


from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from clarion.admin import (
    EMPTY,
    ClarionAdmin,
    LedgerAdmin,
    admin_url,
    adopt,
    json_display,
    link,
    table,
    when,
)

from .. import publishing, rendering, services
from ..channels import channel_spec, template_fields
from ..models import Step, StepType, Template, TemplateVersion, Tenant
from ..workflow_versions import is_unpublished, review_required, version_record_live
from .template_editor import (
    FIELD_LABELS,
    TEMPLATED_STEP_TYPES,
    TemplateForm,
    TemplateTextField,
    preview,
    route_channels,
    send_test_answer,
    source_text,
    template_channel,
    variables_panel,
    version_diff,
)


def _record_deleted(workflow, user, note: str) -> None:
    """A live workflow's template deleted: its rows recorded as its published version (the
    published version's document is always what runs). A never-published one's rows are its
    draft."""
    if not is_unpublished(workflow):
        version_record_live(workflow=workflow, user=user, source="template", note=note)


@admin.register(Template)
class TemplateAdmin(ClarionAdmin):
    list_display = ("__str__", "workflow", "step_ref", "locale", "published", "updated_at")
    list_filter = ("locale", "step__type", "step__workflow")
    list_select_related = ("step__workflow", "published_version")
    search_fields = ("step__ref", "step__workflow__key", "locale")
    ordering = ("step__workflow__key", "step__position", "locale")

    # Deleted with their step or workflow whatever the review rule (see has_delete_permission).
    deleted_with_owner = True

    @admin.display(description=gettext_lazy("workflow"), ordering="step__workflow__key")
    def workflow(self, obj):
        return obj.step.workflow.key

    def has_delete_permission(self, request, obj=None):
        """A template of a live step is deleted at once, with no draft: with
        CLARION["REQUIRE_REVIEW"], nobody does; otherwise the deletion is recorded as a new
        published version of its workflow (delete_model)."""
        return super().has_delete_permission(request, obj) and not review_required()

    def delete_model(self, request, obj):
        workflow = obj.step.workflow
        super().delete_model(request, obj)
        _record_deleted(workflow, request.user, f"Template {obj} deleted on its own.")

    def delete_queryset(self, request, queryset):
        workflows = {t.step.workflow for t in queryset.select_related("step__workflow")}
        super().delete_queryset(request, queryset)
        for workflow in workflows:
            _record_deleted(workflow, request.user, "Templates deleted on their own.")

    @admin.display(description=gettext_lazy("step"), ordering="step__ref")
    def step_ref(self, obj):
        return obj.step.ref

    @admin.display(description=gettext_lazy("published version"))
    def published(self, obj):
        return obj.published_version.number if obj.published_version else EMPTY

    def has_publish_permission(self, request) -> bool:
        """Saving writes a draft; making a version the one that renders takes this (a
        Publisher's, notifications/roles.py). With CLARION["REQUIRE_REVIEW"], nobody publishes
        a template on its own: it goes with its workflow's draft, through review."""
        return (request.user.has_perm("notifications.publish_template")
                and not review_required())

    def _step_for(self, request, obj) -> Step | None:
        if obj is not None:
            return obj.step
        raw = request.POST.get("step") or request.GET.get("step")
        if not raw or not str(raw).isdigit():
            return None
        return Step.objects.filter(pk=raw, type__in=TEMPLATED_STEP_TYPES).first()

    def _channel_for(self, request, obj, step: Step | None) -> str | None:
        if obj is not None:
            return obj.channel_key
        return template_channel(step, request.POST.get("channel") or request.GET.get("channel"))

    def get_form(self, request, obj=None, change=False, **kwargs):
        step = self._step_for(request, obj)
        channel = self._channel_for(request, obj, step)
        attrs = {"channel": channel}
        for name in template_fields(channel):
            rows = 14 if name == "html" else 3  # the email's HTML document
            widget = forms.Textarea(attrs={"rows": rows, "cols": 80, "spellcheck": "false",
                                           "class": "vLargeTextField clarion-liquid",
                                           "data-field": name})
            attrs[name] = TemplateTextField(
                widget=widget, label=FIELD_LABELS.get(name),
                help_text=_("Liquid, e.g. {{ recipient.name }} or {{ data.project }}."),
            )
        # Declared fields shown read-only (the locale of a saved template) leave the form.
        readonly = self.get_readonly_fields(request, obj)
        attrs.update(dict.fromkeys(set(readonly) & set(TemplateForm.declared_fields)))
        kwargs["form"] = type("TemplateForm", (TemplateForm,), attrs)
        return super().get_form(request, obj, change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return ("step", "locale", "published_fields", "versions", "version_history") if obj else ()

    def get_fieldsets(self, request, obj=None):
        step = self._step_for(request, obj)
        channel = self._channel_for(request, obj, step)
        names = template_fields(channel)
        fieldsets = [(None, {"fields": ("step", "locale")})]
        if obj and not self.has_change_permission(request, obj):
            fieldsets.append((_("Published"), {"fields": ("published_fields",)}))
            fieldsets.append((_("Versions"), {"fields": ("version_history",)}))
            return fieldsets
        if names:
            label = channel_spec(channel).label
            if step.type == StepType.ROUTE:
                label = _("Route: %(channel)s") % {"channel": label}
            fieldsets.append((_("%(channel)s fields") % {"channel": label}, {
                "fields": names,
                "description": (
                    _("“Save” creates a new version and publishes it; “Save as draft” keeps the "
                      "published version until you publish the draft.")
                    if self.has_publish_permission(request) else
                    _("“Save as draft” creates a new version; the published version keeps being "
                      "sent until a Publisher publishes your draft.")),
            }))
        elif step is not None and step.type == StepType.ROUTE:
            add = reverse("admin:notifications_template_add")
            fieldsets[0][1]["description"] = format_html(
                _("A route step has a template per channel; choose one: {}."),
                format_html_join(", ", '<a href="{}?step={}&amp;channel={}">{}</a>',
                                 ((add, step.pk, c, c) for c in route_channels(step))))
        else:
            fieldsets[0][1]["description"] = _("Choose the step and save: its fields appear.")
        if obj:
            versions = "versions" if self.has_publish_permission(request) else "version_history"
            fieldsets.append((_("Versions"), {"fields": (versions,)}))
        return fieldsets

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "step":
            kwargs["queryset"] = Step.objects.filter(
                type__in=TEMPLATED_STEP_TYPES).select_related(
                "workflow").order_by("workflow__key", "position")
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.name == "step":
            field.label_from_instance = lambda step: f"{step} ({step.get_type_display()})"
        return field

    published_fields = json_display("fields", gettext_lazy("published fields"))

    @admin.display(description=gettext_lazy("versions"))
    def version_history(self, obj):
        return self.versions(obj, buttons=False)

    @admin.display(description=gettext_lazy("versions"))
    def versions(self, obj, *, buttons=True):
        """Each version with its author and time, a diff against the published one, and a
        button that publishes it (a rollback when older) for those who may change."""
        versions = list(obj.versions.select_related("author").order_by("-number"))
        diff_url = reverse("admin:notifications_template_diff", args=[obj.pk])
        rows = []
        for version in versions:
            published = version.pk == obj.published_version_id
            if published:
                action = format_html("<strong>{}</strong>", _("published"))
            elif buttons:
                newer = version.number > (obj.published_version.number
                                          if obj.published_version else 0)
                verb = (_("Publish v%(number)s") if newer
                        else _("Publish (roll back to) v%(number)s")) % {"number": version.number}
                action = format_html(
                    '<button type="submit" name="_publish_version" value="{}" class="button">'
                    "{}</button>", version.pk, verb)
            else:
                action = ""
            compare = EMPTY
            if obj.published_version_id and not published:
                compare = format_html('<a href="{}?a={}&amp;b={}">{}</a>', diff_url,
                                      obj.published_version_id, version.pk,
                                      _("compare with published"))
            rows.append((link(version, f"v{version.number}"), version.author or EMPTY,
                         when(version.created_at), _("yes") if published else _("no"), action,
                         compare))
        return table((_("Version"), _("Author"), _("Saved"), _("Published"), "", _("Changes")),
                     "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
                     "<td>{}</td></tr>", rows)

    # --- Extra views: preview, diff, test send ------------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("preview/", view(require_POST(self.preview_view)),
                 name="notifications_template_preview"),
            path("<path:object_id>/diff/", view(self.diff_view),
                 name="notifications_template_diff"),
            path("<path:object_id>/send-test/", view(require_POST(self.send_test_view)),
                 name="notifications_template_send_test"),
            *super().get_urls(),
        ]

    def _posted_fields(self, request, step: Step, channel: str | None = None) -> dict:
        return {name: source_text(request.POST.get(name)) for name in
                template_fields(channel or step.type) if request.POST.get(name)}

    def _posted_tenant(self, request) -> Tenant | None:
        raw = request.POST.get("preview_tenant", "")
        return Tenant.objects.filter(pk=raw).first() if raw.isdigit() else None

    def preview_view(self, request):
        """POST the editor's fields (and `step`, `locale`, `preview_tenant`): JSON preview."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        raw = request.POST.get("step", "")
        step = (Step.objects.select_related("workflow")
                .filter(pk=raw, type__in=TEMPLATED_STEP_TYPES).first()
                if raw.isdigit() else None)
        if step is None:
            return JsonResponse({"error": "invalid_request", "detail": _("Choose a step first."),
                                 "fields": {"step": [_("Unknown step.")]}}, status=400)
        channel = template_channel(step, request.POST.get("channel"))
        if channel is None:
            return JsonResponse({"error": "invalid_request", "detail": _("Choose a channel."),
                                 "fields": {"channel": [
                                     _("Expected one of: %(channels)s.")
                                     % {"channels": ", ".join(route_channels(step))}]}},
                                status=400)
        locale = request.POST.get("locale") or step.workflow.default_locale
        return JsonResponse(preview(step, self._posted_fields(request, step, channel),
                                    locale=locale, tenant=self._posted_tenant(request),
                                    user=request.user, channel=channel))

    def diff_view(self, request, object_id):
        template = self.get_object(request, unquote(object_id))
        if template is None or not self.has_view_or_change_permission(request, template):
            raise PermissionDenied
        versions = list(template.versions.select_related("author").order_by("-number"))
        by_pk = {str(v.pk): v for v in versions}
        newest = versions[0] if versions else None
        old = by_pk.get(request.GET.get("a", "")) or (versions[1] if len(versions) > 1
                                                      else newest)
        new = by_pk.get(request.GET.get("b", "")) or newest
        if old and new and old.number > new.number:
            old, new = new, old
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts, "original": template,
            "title": _("Compare versions of %(template)s") % {"template": template},
            "versions": versions, "old": old, "new": new,
            "diffs": version_diff(old, new) if old and new else [],
            "template_url": admin_url(template),
        }
        return TemplateResponse(request, "admin/notifications/template/diff.html", context)

    def send_test_view(self, request, object_id):
        template = self.get_object(request, unquote(object_id))
        if template is None or not self.has_change_permission(request, template):
            raise PermissionDenied
        fields = self._posted_fields(request, template.step)
        try:
            message = services.template_send_test(
                template=template, user=request.user, fields=fields or None,
                tenant=self._posted_tenant(request))
        except services.SendTestError as exc:
            return JsonResponse({"error": "test_send_failed", "detail": str(exc)}, status=400)
        return send_test_answer(message)

    # --- The editor page ------------------------------------------------------------------------

    def render_change_form(self, request, context, add=False, change=False, form_url="",
                           obj=None):
        step = self._step_for(request, obj)
        channel = self._channel_for(request, obj, step)
        can_edit = (self.has_change_permission(request, obj) if obj
                    else self.has_add_permission(request))
        if step is not None and channel is not None and can_edit:  # readers: no editor
            context.update({
                "clarion_step": step,
                "clarion_channel": channel,
                "clarion_variables": variables_panel(step, channel),
                "clarion_filters": sorted(rendering.LOCALE_FILTERS),
                "clarion_tenants": Tenant.objects.order_by("key").only("pk", "key", "name"),
                "clarion_preview_url": reverse("admin:notifications_template_preview"),
                "clarion_send_test_url": (
                    reverse("admin:notifications_template_send_test", args=[obj.pk])
                    if obj and step.type == "email" and self.has_change_permission(request, obj)
                    else ""),
                "clarion_can_edit": can_edit,
                "clarion_can_publish": self.has_publish_permission(request),
                "clarion_locale": obj.locale if obj else "",
            })
        return super().render_change_form(request, context, add, change, form_url, obj)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if request.method == "POST" and "_publish_version" in request.POST:
            return self._publish_version(request, object_id)
        return super().change_view(request, object_id, form_url, extra_context)

    def _publish_version(self, request, object_id):
        template = self.get_object(request, unquote(object_id))
        if template is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not (self.has_change_permission(request, template)
                and self.has_publish_permission(request)):
            raise PermissionDenied
        raw = request.POST["_publish_version"]
        version = template.versions.filter(pk=raw).first() if raw.isdigit() else None
        if version is None:
            messages.error(request, _("That version does not belong to this template."))
        else:
            publishing.template_version_publish(version=version, user=request.user)
            messages.success(request, _("Published version %(number)s of “%(template)s”.")
                             % {"number": version.number, "template": template})
        return HttpResponseRedirect(admin_url(template))

    def save_model(self, request, obj, form, change):
        draft = "_save_draft" in request.POST or not self.has_publish_permission(request)
        template, version = publishing.template_edit(
            step=obj.step, locale=obj.locale, fields=form.cleaned_data["template_fields"],
            user=request.user, publish=not draft,
            channel=form.cleaned_data.get("template_channel", obj.channel),
        )
        adopt(obj, template)
        if version is None:
            number = template.published_version.number if template.published_version else 0
            messages.info(request, _("Nothing changed: version %(number)s stays published.")
                          % {"number": number})
        elif draft:
            workflow = template.step.workflow
            messages.info(request, format_html(
                '{} <a href="{}">{}</a>',
                _("It is in the draft of the workflow “%(key)s”, published with it.")
                % {"key": workflow.key},
                reverse("admin:notifications_workflow_draft", args=[workflow.pk]),
                _("Review the workflow's draft")))
            if "_save_draft" not in request.POST:  # "Save" by someone who may not publish
                messages.warning(request, _("You may save drafts but not publish them: a "
                                            "Publisher reviews and publishes this version."))
            messages.info(request, _("Saved version %(number)s as a draft: version "
                                     "%(published)s stays published.")
                          % {"number": version.number,
                             "published": template.published_version.number}
                          if template.published_version else
                          _("Saved version %(number)s as a draft (not published).")
                          % {"number": version.number})
        else:
            messages.info(request, _("Saved and published version %(number)s.")
                          % {"number": version.number})
        step = template.step
        check = rendering.check_fields(template.channel_key,
                                       form.cleaned_data["template_fields"],
                                       data_schema=step.workflow.data_schema,
                                       sample_data=step.workflow.sample_data)
        for problem in check.warnings:
            messages.warning(request, _("Check %(field)s: %(problem)s")
                             % {"field": problem.field, "problem": problem.message})

    def response_change(self, request, obj):
        if "_save_draft" in request.POST:
            return HttpResponseRedirect(admin_url(obj))
        return super().response_change(request, obj)

    def response_add(self, request, obj, post_url_continue=None):
        if "_save_draft" in request.POST:
            return HttpResponseRedirect(admin_url(obj))
        return super().response_add(request, obj, post_url_continue)


@admin.register(TemplateVersion)
class TemplateVersionAdmin(LedgerAdmin):
    list_display = ("template", "number", "author", "created_at", "is_published")
    list_filter = ("template__step__workflow", "template__locale")
    list_select_related = ("template__step__workflow", "template__published_version", "author")
    search_fields = ("template__step__ref", "template__step__workflow__key")
    fields = ("template", "number", "author", "created_at", "is_published", "source")
    readonly_fields = fields
    actions = ("publish",)

    @admin.display(boolean=True, description=gettext_lazy("published"))
    def is_published(self, obj):
        return obj.template.published_version_id == obj.pk

    source = json_display("fields", gettext_lazy("fields"))

    def has_publish_permission(self, request):
        return request.user.has_perm("notifications.publish_template") and not review_required()

    @admin.action(description=gettext_lazy("Publish (roll back to) this version"),
                  permissions=["publish"])
    def publish(self, request, queryset):
        versions = list(queryset.select_related("template__step__workflow"))
        templates = [version.template_id for version in versions]
        if len(set(templates)) != len(templates):
            self.message_user(request, _("Select one version per template."), messages.ERROR)
            return
        for version in versions:
            publishing.template_version_publish(version=version, user=request.user)
            self.message_user(request, _("Published version %(number)s of “%(template)s”.")
                              % {"number": version.number, "template": version.template})
