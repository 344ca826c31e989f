"""Every page of the admin, generated from the admin site's registry and its URL patterns, with a
database that holds a real row of every registered model: what the admin's browser checks
(axe-core, 375 px, French and German) walk.

A URL under /admin/ that is neither a registered model's changelist, add, change, history or
delete view, nor listed in CUSTOM_PAGES or NOT_PAGES, fails `unchecked_admin_urls()`: a new admin
page cannot go unchecked.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.contrib import admin
from django.contrib.auth.models import User
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

GENERIC_VIEWS = ("changelist", "add", "change", "history", "delete")
# The step the welcome workflow's draft adds in admin_world, with an English template.
DRAFT_STEP = "follow-up"
# Packages whose ModelAdmins are Clarion's own (their pages: `AdminPage.custom`).
CLARION_APPS = {"clarion", "notifications", "inbox", "preferences", "events", "analytics",
                "compat"}

# URL names under /admin/ that are not pages a person reads, and where what they show is checked.
NOT_PAGES = {
    "logout": "POST only; redirects to the login page",
    "autocomplete": "JSON for the autocomplete widgets",
    "jsi18n": "the admin's JavaScript catalog",
    "set_language": "POST only: the header's language menu; redirects back to the page",
    "view_on_site": "a redirect to the object's own site",
    "notifications_message_resend": "POST only; redirects to the message's page (with its "
                                    "button: checked)",
    "notifications_template_preview": "POST only; JSON the template editor shows",
    "notifications_template_send_test": "POST only; JSON the template editor shows",
    "notifications_workflow_export": "a JSON download",
    "notifications_workflow_version_action": "POST only (submit, approve, publish, discard, "
                                             "roll back); redirects to the version's page",
    "notifications_workflow_draft": "a redirect to the open draft's version page (checked as "
                                    "notifications_workflow_version)",
    "notifications_workflow_diagram": "POST only; an HTML fragment drawn inside the workflow "
                                      "page (checked there)",
    "notifications_workflow_draft_template_preview": "POST only; JSON the draft's template "
                                                     "editor shows",
    "notifications_workflow_draft_template_send_test": "POST only; JSON the draft's template "
                                                       "editor shows",
}


@dataclass(frozen=True)
class AdminPage:
    """One admin page to open: a name for reports, its path (with its query), and whether it
    is Clarion's own page rather than a stock admin view."""

    name: str
    path: str
    custom: bool = False


def _first(model):
    return model._default_manager.order_by("pk").first()


def _custom_pages() -> dict[str, Callable[[], list[AdminPage]]]:
    """URL name → the pages of that URL to check, built from the rows `admin_world` made."""
    from notifications.models import (
        Message,
        ProviderConfig,
        Step,
        Template,
        Workflow,
        WorkflowVersion,
    )

    def named(url_name: str, *args, query: str = "") -> AdminPage:
        return AdminPage(url_name + (f" {query}" if query else ""),
                         reverse(f"admin:{url_name}", args=args) + query, custom=True)

    failed = Message.objects.filter(status=Message.Status.FAILED).order_by("pk").first
    version = WorkflowVersion.objects.order_by("-number", "pk").first  # a side-by-side diff
    return {
        "index": lambda: [named("index")],
        "login": lambda: [],  # checked signed out, before the others (admin_login_page)
        "password_change": lambda: [named("password_change")],
        "password_change_done": lambda: [named("password_change_done")],
        "app_list": lambda: [AdminPage(f"app_list {label}",
                                       reverse("admin:app_list", args=[label]))
                             for label in sorted({m._meta.app_label
                                                  for m in admin.site._registry})],
        "admin-find": lambda: [AdminPage("find (several)", reverse("admin-find") + "?q=ada",
                                         custom=True),
                               AdminPage("find (none)", reverse("admin-find") + "?q=nobody",
                                         custom=True)],
        "auth_user_password_change": lambda: [named("auth_user_password_change",
                                                    _first(User).pk)],
        "notifications_providerconfig_send_test": lambda: [
            named("notifications_providerconfig_send_test", _first(ProviderConfig).pk)],
        "notifications_template_diff": lambda: [
            named("notifications_template_diff",
                  Template.objects.filter(versions__number=2).first().pk)],
        "notifications_workflow_import": lambda: [named("notifications_workflow_import")],
        "notifications_workflow_versions": lambda: [named(
            "notifications_workflow_versions", version().workflow_id)],
        "notifications_workflow_version": lambda: [named(
            "notifications_workflow_version", version().workflow_id, version().number)],
        # the editor of a template of a step the welcome workflow's draft adds (admin_world)
        "notifications_workflow_draft_template": lambda: [named(
            "notifications_workflow_draft_template", Workflow.objects.get(key="welcome").pk,
            DRAFT_STEP, query="?locale=en")],
        # Variants of generic pages that show more: the editor for a new template of a step,
        # a failed message with its Resend button, analytics by channel.
        "notifications_template_add": lambda: [named(
            "notifications_template_add",
            query=f"?step={Step.objects.filter(type='email').order_by('pk').first().pk}")],
        "notifications_message_change": lambda: [named("notifications_message_change",
                                                       failed().pk)],
        "analytics_hourlyrollup_changelist": lambda: [named("analytics_hourlyrollup_changelist",
                                                            query="?by=channel")],
    }


def admin_urls() -> list[tuple[str, str]]:
    """(route, URL name) of every URL pattern under /admin/, in the order Django tries them."""
    found: list[tuple[str, str]] = []

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern) and route.startswith("admin/"):
                found.append((route, pattern.name or ""))

    walk(get_resolver().url_patterns, "")
    return found


def unchecked_admin_urls() -> list[str]:
    """Admin URLs that no check covers: neither a registered model's generic view, nor a custom
    page, nor a listed non-page. Unnamed patterns are Django's own redirects (catch-all, the
    old change URL)."""
    generic = {f"{m._meta.app_label}_{m._meta.model_name}_{view}"
               for m in admin.site._registry for view in GENERIC_VIEWS}
    known = generic | set(_custom_pages()) | set(NOT_PAGES)
    return [f"{route} ({name})" for route, name in admin_urls() if name and name not in known]


def admin_pages(user: User) -> list[AdminPage]:
    """Every admin page `user` (a superuser) may open: each registered model's changelist, add,
    change, history and delete views (change, history, delete on a real row), then the custom
    pages."""
    request = RequestFactory().get("/admin/")
    request.user = user
    pages: list[AdminPage] = []
    for model, model_admin in admin.site._registry.items():
        base = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        label = model._meta.label
        ours = type(model_admin).__module__.split(".")[0] in CLARION_APPS
        pages.append(AdminPage(f"{label} changelist", reverse(f"{base}_changelist"), ours))
        if model_admin.has_add_permission(request):
            pages.append(AdminPage(f"{label} add", reverse(f"{base}_add"), ours))
        row = _first(model)
        if row is None:
            continue  # admin_world_gaps() names it
        pages.append(AdminPage(f"{label} change", reverse(f"{base}_change", args=[row.pk]),
                               ours))
        pages.append(AdminPage(f"{label} history", reverse(f"{base}_history", args=[row.pk])))
        if model_admin.has_delete_permission(request, row):
            pages.append(AdminPage(f"{label} delete", reverse(f"{base}_delete", args=[row.pk])))
    for build in _custom_pages().values():
        pages.extend(build())
    return pages


def admin_world_gaps() -> list[str]:
    """Registered models with no row: their change pages would go unchecked."""
    return [model._meta.label for model in admin.site._registry if _first(model) is None]


def admin_world(*, api, run_tasks, receiver) -> User:
    """A database with a real row of every registered model, made the way Clarion makes them
    (the demo, API triggers run by the real queue, services), and a superuser `root` (password
    `s3cret-pass`). `receiver`: a running outbound-events receiver (tests/events/conftest.py);
    the `smtp` fixture must be active."""
    from axes.models import AccessFailureLog
    from django_q.models import Schedule as QueueSchedule
    from django_q.models import Task

    from analytics.rollups import rollup_fold_all
    from events.services import endpoint_put
    from notifications import services
    from notifications.demo import seed_demo
    from notifications.models import Message, ProviderConfig, Recipient, Template, Workflow
    from notifications.schedules import schedule_put
    from notifications.workflow_versions import (
        draft_save,
        draft_step_template_put,
        workflow_document,
    )
    from preferences.models import Category, WorkflowDefault
    from preferences.services import preference_set_update

    seed_demo()
    _, receiver.secret = endpoint_put(key="crm", url=receiver.url, tenant=None,
                                      events=["message.sent", "run.completed"])
    response = api.post("/api/v1/workflows/welcome/trigger",
                        {"recipients": [{"id": "ada", "name": "Ada", "email": "ada@example.com"},
                                        "demo-user"], "data": {"body": "Hello"}},
                        HTTP_IDEMPOTENCY_KEY="first-welcome")
    assert response.status_code == 202, response.content
    run_tasks()
    rollup_fold_all()
    Message.objects.filter(pk=Message.objects.order_by("pk").last().pk).update(
        status=Message.Status.FAILED, error="550 mailbox unavailable")

    template = Template.objects.filter(step__workflow__key="welcome").order_by("pk").first()
    fields = dict(template.published_version.fields)
    services.template_save(step=template.step, locale=template.locale,
                           fields={**fields, next(iter(fields)): "Changed text"})
    ada = Recipient.objects.get(external_id="ada")
    topic, _ = services.topic_upsert(key="project-42", name="Project 42")
    services.topic_subscribe(topic=topic, recipients=[ada])
    welcome = Workflow.objects.get(key="welcome")
    schedule_put(key="weekly-digest", workflow=welcome, repeat={"frequency": "daily",
                                                                "at": "09:00"},
                 recipients=["ada"])
    preference_set_update(recipient=ada, data={"channel_types": {"sms": False}}, merge=True)
    WorkflowDefault.objects.get_or_create(workflow=welcome,
                                          defaults={"channel_types": {"email": True}})
    Category.objects.get_or_create(key="account", defaults={"name": "Account"})
    ProviderConfig.objects.create(key="mail-main", channel="email", kind="smtp")
    # welcome's draft adds an email step with its template (its editor is a page of its own)
    document = workflow_document(welcome)
    document["steps"].append({"ref": DRAFT_STEP, "type": "email", "templates": {}})
    draft_save(workflow=welcome, document=document, user=None)
    draft_step_template_put(workflow=welcome, step_ref=DRAFT_STEP, locale="en", user=None,
                            fields={"subject": "Still there, {{ recipient.name }}?",
                                    "html": "<p>{{ data.body }}</p>"})
    now = timezone.now()
    for success in (True, False):
        Task.objects.create(id=f"task{int(success)}", name=f"task-{success}",
                            func="notifications.tasks.sweep", started=now - timedelta(seconds=1),
                            stopped=now, success=success, result=None if success else "boom")
    QueueSchedule.objects.create(name="nightly", func="notifications.tasks.sweep",
                                 schedule_type=QueueSchedule.DAILY)
    # A wrong password: django-axes records the attempt and its failure.
    Client().post("/admin/login/", {"username": "nobody", "password": "guess"},
                  REMOTE_ADDR="203.0.113.7")
    # Its failure log is off in settings (AXES_ENABLE_ACCESS_FAILURE_LOG), its admin is not.
    AccessFailureLog.objects.create(username="nobody", ip_address="203.0.113.7",
                                    user_agent="test", http_accept="*/*",
                                    path_info="/admin/login/", locked_out=False)
    return User.objects.create_superuser("root", "root@example.com", "s3cret-pass")
