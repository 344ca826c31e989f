"""The admin's own pages speak French and German: the browser's Accept-Language, or the language
chosen in the admin's header (Django's set_language, a cookie), picks the language of the
dashboard, search, builder, template editor and its diff, the editor of a template of a step
a workflow's draft adds, a workflow's versions and one version beside the live one (the
side-by-side diff of the draft/review/publish pages), import, analytics, a run's timeline, a
message's resend button and what its tries count, and a provider's test page. Only the admin
changes language: the API answers in English whatever the request asks."""

import re
from html import unescape

import pytest
from django.urls import reverse

from notifications.models import Message, ProviderConfig, Run, Template
from notifications.services import template_save
from notifications.workflow_versions import draft_save, workflow_document

from ..conftest import email_step, in_app_step

# Per page: a text the page shows in French, in German, and its English original.
EXPECTED = {
    "index": ("Fournisseurs en difficulté", "Anbieter mit Problemen", "Providers in trouble"),
    "find": ("Trouver une notification", "Benachrichtigung finden", "Find a notification"),
    "builder": ("Ajouter une étape", "Schritt hinzufügen", "Add step"),
    "editor": ("Variables disponibles", "Verfügbare Variablen", "Variables you can use"),
    "diff": ("Comparer les versions", "Versionen vergleichen", "Compare versions"),
    "versions": ("Toutes les versions de ce workflow", "Alle Versionen dieses Workflows",
                 "Every version of this workflow"),
    "version": ("Modifications : En ligne : version 2 (à gauche)",
                "Änderungen: Live: Version 2 (links)", "Changes: Live: version 2 (left)"),
    "draft template": ("Il est publié avec le brouillon du workflow.",
                       "Sie wird mit dem Entwurf des Workflows veröffentlicht.",
                       "It is published with the workflow's draft."),
    "import": ("JSON du workflow", "Workflow-JSON", "Workflow JSON"),
    "analytics": ("Exécutions et suppressions", "Durchläufe und Unterdrückungen",
                  "Runs and suppressions"),
    "timeline": ("Chronologie", "Zeitleiste", "Timeline"),
    "resend": ("Renvoyer ce message", "Diese Nachricht erneut senden", "Resend this message"),
    "message tries": ("1 passage d’envoi, 1 appel au fournisseur (les tentatives d’envoi "
                      "ci-dessous).",
                      "1 Zustelldurchgang, 1 Anbieteraufruf (die Zustellversuche unten).",
                      "1 delivery pass, 1 provider call (the delivery attempts below)."),
    "send test": ("Envoyer un message de test par mail-main",
                  "Testnachricht über mail-main senden",
                  "Send a test message through mail-main"),
}

# More of what some pages show, written in Clarion's code rather than its templates: the
# builder's flow diagram and templates, the editor's fields and versions table, import's title, the
# timeline's entries.
MORE = {
    "builder": [("Déclenchement de order", "Auslösung von order", "Trigger order"),
                ("v1 publiée", "v1 veröffentlicht", "v1 published")],
    "editor": [("Champs Email", "Email-Felder", "Email fields"),
               ("Objet", "Betreff", "Subject:"),
               ("Liquid, p. ex.", "Liquid, z. B.", "Liquid, e.g."),
               ("Auteur", "Autor", "Author"),
               ("comparer avec la version publiée", "mit der veröffentlichten vergleichen",
                "compare with published"),
               ("désabonnement en un clic", "Abmeldung mit einem Klick",
                "one-click unsubscribe")],
    "import": [("Importer un workflow", "Workflow importieren", "Import a workflow")],
    "timeline": [("Déclenché par la clé d’API tests", "Ausgelöst vom API-Schlüssel tests",
                  "Triggered by API key tests"),
                 ("Appel au fournisseur locmem", "Aufruf des Anbieters locmem",
                  "Provider call to locmem")],
}

@pytest.fixture
def pages(api, make_workflow, run_tasks):
    """{page: its path}, each over real rows: a workflow triggered and run, a failed message,
    a template with two versions, a workflow published twice (version 1 is shown beside the live
    version 2) whose draft adds a step, a provider."""
    workflow = make_workflow("order", steps=[in_app_step(), email_step()])
    response = api.post("/api/v1/workflows/order/trigger",
                        {"recipients": [{"id": "ada", "email": "ada@example.com"}]})
    assert response.status_code == 202, response.content
    run_tasks()
    message = Message.objects.get(channel="email")
    Message.objects.filter(pk=message.pk).update(status=Message.Status.FAILED, error="550")
    template = Template.objects.get(step__workflow=workflow, step__ref="mail")
    template_save(step=template.step, locale="en", fields={"subject": "Hi", "html": "<p>x</p>"})
    document = api.get("/api/v1/workflows/order").json()
    response = api.put("/api/v1/workflows/order", {**document, "name": "Order shipped"})
    assert response.status_code == 200, response.content
    assert workflow.versions.get(number=2).state == "published"
    document = {**workflow_document(workflow), "name": "Order shipped"}
    document["steps"].append({"ref": "text", "type": "sms", "templates": {}})
    draft_save(workflow=workflow, document=document, user=None)  # adds a step: its editor
    provider = ProviderConfig.objects.create(key="mail-main", channel="email", kind="smtp",
                                             consecutive_failures=3, last_error="timeout")
    return {
        "index": reverse("admin:index"),
        "find": reverse("admin-find") + "?q=nobody",
        "builder": reverse("admin:notifications_workflow_change", args=[workflow.pk]),
        "editor": reverse("admin:notifications_template_change", args=[template.pk]),
        "diff": reverse("admin:notifications_template_diff", args=[template.pk]),
        "versions": reverse("admin:notifications_workflow_versions", args=[workflow.pk]),
        "version": reverse("admin:notifications_workflow_version", args=[workflow.pk, 1]),
        "draft template": reverse("admin:notifications_workflow_draft_template",
                                  args=[workflow.pk, "text"]),
        "import": reverse("admin:notifications_workflow_import"),
        "analytics": reverse("admin:analytics_hourlyrollup_changelist"),
        "timeline": reverse("admin:notifications_run_change", args=[Run.objects.get().pk]),
        "resend": reverse("admin:notifications_message_change", args=[message.pk]),
        "message tries": reverse("admin:notifications_message_change", args=[message.pk]),
        "send test": reverse("admin:notifications_providerconfig_send_test",
                             args=[provider.pk]),
    }


def text_of(response) -> str:
    """The page's text with tags and repeated spaces removed."""
    html = response.content.decode()
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


@pytest.mark.django_db
@pytest.mark.parametrize(("language", "column"), [("fr", 0), ("de", 1)])
def test_the_admins_own_pages_follow_accept_language(admin_client, pages, language, column):
    for name, path in pages.items():
        response = admin_client.get(path, HTTP_ACCEPT_LANGUAGE=f"{language},en;q=0.5")
        assert response.status_code == 200, name
        assert response["Content-Language"] == language, name
        text = text_of(response)
        for expected in [EXPECTED[name], *MORE.get(name, [])]:
            translated, english = expected[column], expected[2]
            assert translated in text, f"{name} in {language}: no {translated!r}"
            assert english not in text, f"{name} in {language}: still {english!r}"


@pytest.mark.django_db
def test_english_stays_the_default(admin_client, pages):
    for name, path in pages.items():
        text = text_of(admin_client.get(path))
        for expected in [EXPECTED[name], *MORE.get(name, [])]:
            assert expected[2] in text, f"{name}: no {expected[2]!r}"


@pytest.mark.django_db
def test_the_language_chosen_in_the_header_wins_over_the_browsers(admin_client, pages):
    index = admin_client.get(pages["index"], HTTP_ACCEPT_LANGUAGE="fr")
    assert 'name="language"' in index.content.decode()  # the header's language menu
    chosen = admin_client.post(reverse("set_language"),
                               {"language": "de", "next": pages["index"]})
    assert chosen.status_code == 302
    page = admin_client.get(pages["index"], HTTP_ACCEPT_LANGUAGE="fr")
    assert "Anbieter mit Problemen" in text_of(page)


@pytest.mark.django_db
def test_the_api_answers_in_english_whatever_the_request_asks(api):
    response = api.post("/api/v1/workflows/nope/trigger", {"recipients": ["ada"]},
                        HTTP_ACCEPT_LANGUAGE="fr")
    assert response.status_code == 404
    assert "Content-Language" not in response
    assert response.json()["detail"].isascii()


# What the admin writes from its Python code rather than its templates: a flash message, a
# model's, a field's and a column's name, a field's help and choices, what a read-only field shows,
# a search box's help.
WRITTEN_IN_PYTHON = {
    "builder errors": ("Corrigez les erreurs ci-dessous : rien n’a été enregistré.",
                       "Bitte korrigieren Sie die Fehler unten: Nichts wurde gespeichert.",
                       "Please correct the errors below: nothing was saved."),
    "recipient runs": ("Dernières exécutions", "Letzte Durchläufe", "Latest runs"),
    "recipient no runs": ("Aucune exécution.", "Keine Durchläufe.", "No runs."),
    "tenant secret": ("Aucun pour l’instant.", "Noch keines.", "None yet."),
    "runs search": ("Un identifiant de destinataire, une clé de workflow",
                    "Eine Empfänger-ID, ein Workflow-Schlüssel", "A recipient id, a workflow key"),
    "provider circuit": ("fermé (3 échecs)", "geschlossen (3 Fehlschläge)",
                         "closed (3 failures)"),
    "model names": ("Planifications", "Zeitpläne", "Schedules"),  # the navigation's
    "field label": ("Nom de l’expéditeur", "Absendername", "Sender name"),
    "status choices": ("Impossible à remettre", "Unzustellbar", "Undeliverable"),  # a filter's
    "audit log": ("Ressource", "Ressource", "Resource"),  # django-auditlog's, kept in ours
    "field help": ("Affiché en bas de chaque e-mail", "Am Ende jeder E-Mail angezeigt",
                   "Shown at the bottom of every email"),
}


@pytest.mark.django_db
@pytest.mark.parametrize(("language", "column"), [("fr", 0), ("de", 1), ("en", 2)])
def test_what_the_admin_writes_in_python_follows_the_language(admin_client, make_workflow,
                                                               language, column):
    from notifications.models import Recipient, Tenant

    workflow = make_workflow("order", steps=[in_app_step()])
    recipient = Recipient.objects.create(external_id="ada")
    tenant = Tenant.objects.create(key="acme", name="Acme")
    ProviderConfig.objects.create(key="mail-main", channel="email", kind="smtp",
                                  consecutive_failures=3)
    headers = {"HTTP_ACCEPT_LANGUAGE": f"{language},en;q=0.5"}
    builder = admin_client.post(
        reverse("admin:notifications_workflow_change", args=[workflow.pk]),
        {"name": "Order", "default_locale": "en", "active": "on", "steps-0-type": "throttle",
         "steps-0-ref": "limit", "steps-0-limit": "0", "steps-0-window_amount": "1",
         "steps-0-window_unit": "hours"}, **headers)
    assert builder.status_code == 200
    recipient_page = admin_client.get(
        reverse("admin:notifications_recipient_change", args=[recipient.pk]), **headers)
    pages = {
        "builder errors": builder,
        "recipient runs": recipient_page,
        "recipient no runs": recipient_page,
        "tenant secret": admin_client.get(
            reverse("admin:notifications_tenant_change", args=[tenant.pk]), **headers),
        "runs search": admin_client.get(reverse("admin:notifications_run_changelist"),
                                        **headers),
        "provider circuit": admin_client.get(
            reverse("admin:notifications_providerconfig_changelist"), **headers),
    }
    pages["model names"] = pages["runs search"]
    pages["field label"] = pages["field help"] = pages["tenant secret"]
    pages["status choices"] = admin_client.get(
        reverse("admin:notifications_message_changelist"), **headers)
    pages["audit log"] = admin_client.get(reverse("admin:auditlog_logentry_changelist"),
                                          **headers)
    for name, response in pages.items():
        assert response.status_code == 200, name
        text = text_of(response)
        expected = WRITTEN_IN_PYTHON[name][column]
        assert expected in text, f"{name} in {language}: no {expected!r}"
        if language != "en":
            english = WRITTEN_IN_PYTHON[name][2]
            assert english not in text, f"{name} in {language}: still {english!r}"


def test_a_message_is_named_in_the_admins_language():
    """The admin titles a message's page and its links with str(message)."""
    from django.utils import translation

    from notifications.models import Message

    message = Message(channel="email", status="sent", to="ada@example.com")
    assert str(message) == "Email to ada@example.com (sent)"
    with translation.override("de"):
        assert str(message) == f"{message.get_channel_display()} an ada@example.com (gesendet)"
    with translation.override("fr"):
        assert str(message) == f"{message.get_channel_display()} à ada@example.com (envoyé)"
