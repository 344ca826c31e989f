"""The admin's roles: Django groups with the model permissions each kind of person needs.

- Editor: drafts workflows and templates, previews them, sends tests to themselves and
  submits a workflow's draft for review.
- Publisher: what an Editor does, and approves and publishes (or rolls back) workflow and
  template versions.
- Support: reads the activity (search, triggers and their idempotency records, runs, messages,
  recipients) and resends a failed message.
- Administrator: every permission, people and roles included.

Data migrations create them (notifications/migrations/0031_roles.py, 0032_roles_analytics.py,
0034_roles_workflow_versions.py, 0036_roles_idempotency_records.py);
a change to the lists below needs a new migration that calls `roles_sync(apps, strict=False)` again
(not strict: when migrating from nothing, an older sync runs before later models exist; the tests
call `roles_sync()` strictly on the live models, so a misspelt permission still fails).
docs/admin-guide.md explains them.
"""

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions

EDITOR = "Editor"
PUBLISHER = "Publisher"
SUPPORT = "Support"
ADMINISTRATOR = "Administrator"


def _crud(app_label: str, model: str, *actions: str) -> list[str]:
    return [f"{app_label}.{action}_{model}" for action in actions]


_AUTHORING = [
    *_crud("notifications", "workflow", "view", "add", "change"),
    *_crud("notifications", "step", "view", "add", "change", "delete"),
    *_crud("notifications", "template", "view", "add", "change"),
    "notifications.view_templateversion",
    "notifications.view_workflowversion",
    *_crud("notifications", "layout", "view", "add", "change"),
    *_crud("preferences", "category", "view", "add", "change"),
    # What previews and test sends read: the schedule, the audience, the tenants' branding.
    "notifications.view_schedule",
    "notifications.view_recipient",
    "notifications.view_topic",
    "notifications.view_tenant",
]

_ACTIVITY = [
    *(f"notifications.view_{model}" for model in (
        "trigger", "run", "message", "deliveryattempt", "steplog", "messageevent",
        "idempotencyrecord",
        "recipient", "topic", "tenant", "workflow", "step", "template", "templateversion",
        "layout", "schedule", "providerconfig", "approval")),
    "inbox.view_inboxitem",
    "preferences.view_preferenceset",
    "preferences.view_category",
    "events.view_eventdelivery",
    "analytics.view_hourlyrollup",
]

ROLES: dict[str, list[str]] = {
    EDITOR: _AUTHORING,
    PUBLISHER: [
        *_AUTHORING,
        "notifications.publish_template",
        "notifications.publish_workflow",
        "notifications.delete_template",
        "notifications.delete_workflow",
        *_crud("notifications", "schedule", "add", "change", "delete"),
        *_crud("preferences", "workflowdefault", "view", "add", "change", "delete"),
    ],
    SUPPORT: [*_ACTIVITY, "notifications.resend_message"],
}


def roles_sync(apps=global_apps, strict: bool = True) -> None:
    """Create or update the four role groups with exactly their permissions (Administrator:
    every permission there is). `apps`: a migration's historical registry, or the live one.

    Raises LookupError naming a permission of `ROLES` that no installed model has; unless not
    `strict` (an older migration, whose models do not have the later permissions yet: those
    are left out, and the migration that brings them syncs again).
    """
    # Django creates permissions after the last migration; the roles need them now (those of
    # the models `apps` has: create_permissions skips an app it does not know).
    for app_config in global_apps.get_app_configs():
        create_permissions(app_config, verbosity=0, apps=apps)
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    every = {f"{app_label}.{codename}": pk for pk, app_label, codename in
             permission_model.objects.values_list("pk", "content_type__app_label", "codename")}
    known = {model._meta.app_label for model in apps.get_models()}
    for name, names in ROLES.items():
        # An app not migrated yet (a later migration syncs again) is left out; a typo is not.
        names = [n for n in names if n.split(".")[0] in known]
        missing = sorted(set(names) - set(every))
        if not strict:
            names, missing = [n for n in names if n in every], []
        if missing:
            raise LookupError(f"Role {name}: no such permission: {', '.join(missing)}")
        group, _ = group_model.objects.get_or_create(name=name)
        group.permissions.set([every[n] for n in names])
    administrator, _ = group_model.objects.get_or_create(name=ADMINISTRATOR)
    administrator.permissions.set(list(every.values()))


def roles_remove(apps=global_apps) -> None:
    """Delete the four role groups (the migration's reverse)."""
    apps.get_model("auth", "Group").objects.filter(
        name__in=[*ROLES, ADMINISTRATOR]).delete()
