"""A template that reads only what every run of a trigger shares (data, actor, tenant, workflow)
is rendered once per trigger, locale and time zone in a batch; any other, for each run. Either
way each run's content is byte for byte what rendering it for that run alone gives."""

import pytest

from inbox.models import InboxItem
from notifications import services
from notifications.engine import channel_steps
from notifications.models import Message, Recipient, Run, StepLog, Topic
from notifications.rendering import RenderOptions, fields_read, render_fields
from notifications.rendering.variables import run_variables
from preferences.services import preference_set_update

from ..conftest import in_app_step
from .test_fanout import subscribe

TRIGGER = "/api/v1/workflows/welcome/trigger"


@pytest.mark.parametrize("body, read", [
    ("News", set()),
    ("{{ data.title }} by {{ actor.name }} at {{ tenant.name }} ({{ workflow.key }})",
     {"data", "actor", "tenant", "workflow"}),
    ("{% for e in data.items %}{{ e.n | format_number }}{% endfor %}", {"data"}),
    ("Hi {{ recipient.name }}", {"recipient"}),
    ("{{ data[recipient.id] }}", {"data", "recipient"}),
    ("{{ steps.batch.count }} new", {"steps"}),
    ("{{ preferences_url }}", {"preferences_url"}),
    ("{% assign who = recipient %}{{ who.name }}", {"recipient", "who"}),
    ("{% assign x = 'recipient' %}{{ [x].name }}", None),  # a root named by a value
    ("{% for k in data.keys %}{{ [k].name }}{% endfor %}", None),  # by a loop's value
    # An assignment that may not have run does not hide the variable of its name.
    ("{% if data.off %}{% assign recipient = data %}{% endif %}{{ recipient.name }}",
     {"data", "recipient"}),
    ("{% for e in data.none %}{% assign recipient = e %}{% endfor %}{{ recipient.name }}",
     {"data", "recipient"}),
    ("{% if false %}{% capture recipient %}{% endcapture %}{% endif %}{{ recipient.name }}",
     {"recipient"}),
    ("{% assign total = data.n %}{{ total }}", {"data", "total"}),
    # A counter is not the variable of its name.
    ("{% increment recipient %}{{ recipient.name }}", {"recipient"}),
    ("{% decrement steps %}{{ steps.batch.count }}", {"steps"}),
    ("{% for recipient in data.items %}{{ recipient }}{% endfor %}", {"data"}),
    ("{{ 'now' | date: '%H:%M' }}", None),  # the clock
    ("{{ data.at | format_datetime }}", None),
    ("{{ data.at | time_ago }}", None),
])
def test_fields_read_names_the_variables_a_template_reads(body, read):
    assert fields_read("in_app", {"body": body}) == (None if read is None else frozenset(read))


def test_fields_read_joins_every_field_and_passes_over_empty_ones():
    assert fields_read("push", {"title": "{{ data.title }}", "body": "{{ actor.name }}",
                                "url": ""}) == {"data", "actor"}
    assert fields_read("push", {"title": "{{ data.title }}", "body": "{{ 'now' | date }}"}) \
        is None


def _fan_out(api, make_workflow, body: str) -> tuple[list[Run], list]:
    """A trigger of an in-app step with `body` to a topic of five: two with locale fr (one in
    Paris), the first opted out of in-app. Returns the runs (the opted-out first) and the
    render_fields calls the engine made."""
    make_workflow("welcome", steps=[in_app_step(body=body)])
    people = subscribe(Topic.objects.create(key="t"), 5, prefix="r-")
    Recipient.objects.filter(pk__in=[people[3].pk, people[4].pk]).update(locale="fr")
    Recipient.objects.filter(pk=people[4].pk).update(timezone="Europe/Paris")
    for n, person in enumerate(people):
        Recipient.objects.filter(pk=person.pk).update(name=f"Person {n}")
    preference_set_update(recipient=people[0], merge=True,
                          data={"channel_types": {"in_app": False}})
    trigger_id = api.post(TRIGGER, {"recipients": [{"topic": "t"}], "actor": {
        "id": "ada", "name": "Ada"}, "data": {"title": "Release", "n": 1234.5}}).json()[
        "trigger_id"]
    return trigger_id, [p.pk for p in people]


def _spied(monkeypatch) -> list:
    calls = []
    real = channel_steps.render_fields

    def spy(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(channel_steps, "render_fields", spy)
    return calls


def _alone(run: Run) -> dict:
    """The run's in-app content rendered for it alone, as one run's pass renders it."""
    template = run.workflow.steps.get(ref="inbox").templates.get()
    return render_fields("in_app", template.fields, run_variables(run, [], links=False),
                         RenderOptions(locale=template.locale))


def _check(trigger_id: str, people: list[int]) -> list[str]:
    """Each sent run's message and item hold what rendering it alone gives; the opted-out one
    has its suppressed message and `opted_out` entry and no item. Returns the bodies, in
    subscriber order."""
    runs = {run.recipient_id: run for run in Run.objects.filter(trigger_id=trigger_id)
            .select_related("recipient", "workflow", "tenant", "trigger")}
    skipped = runs[people[0]]
    assert Message.objects.get(run=skipped).status == "suppressed"
    assert StepLog.objects.filter(run=skipped, step_ref="inbox", event="opted_out").exists()
    assert not InboxItem.objects.filter(recipient_id=people[0]).exists()
    bodies = []
    for pk in people[1:]:
        item = InboxItem.objects.get(recipient_id=pk)
        assert item.content == Message.objects.get(run=runs[pk]).content == _alone(runs[pk])
        bodies.append(item.content["body"])
    return bodies


def test_a_template_of_trigger_variables_renders_once_a_locale_and_zone_in_a_fan_out_chunk(
        api, make_workflow, monkeypatch):
    calls = _spied(monkeypatch)
    trigger_id, people = _fan_out(
        api, make_workflow, "{{ data.title }} by {{ actor.name }}: {{ data.n | format_number }}")

    services.trigger_fanout(trigger_id=trigger_id)

    # en/UTC (two), fr/UTC (one), fr/Paris (one): three renders for four items.
    assert len(calls) == 3
    assert _check(trigger_id, people) == ["Release by Ada: 1,234.5"] * 2 + [
        "Release by Ada: 1\u202f234,5"] * 2


def test_a_template_that_reads_the_recipient_renders_for_each_recipient(
        api, make_workflow, monkeypatch):
    calls = _spied(monkeypatch)
    trigger_id, people = _fan_out(api, make_workflow,
                                  "{{ data.title }} for {{ recipient.name }}")

    services.trigger_fanout(trigger_id=trigger_id)

    assert len(calls) == 4
    assert _check(trigger_id, people) == [f"Release for Person {n}" for n in range(1, 5)]


def test_a_template_that_reads_the_clock_renders_for_each_recipient(
        api, make_workflow, monkeypatch):
    calls = _spied(monkeypatch)
    trigger_id, people = _fan_out(api, make_workflow, "{{ data.title }} {{ 'now' | date: '%Y' }}")

    services.trigger_fanout(trigger_id=trigger_id)

    assert len(calls) == 4
    assert len(_check(trigger_id, people)) == 4


def test_a_template_that_assigns_over_the_recipient_only_sometimes_renders_for_each_recipient(
        api, make_workflow, monkeypatch):
    calls = _spied(monkeypatch)
    trigger_id, people = _fan_out(api, make_workflow, "{% if data.off %}{% assign recipient = "
                                  "data %}{% endif %}{{ data.title }} for {{ recipient.name }}")

    services.trigger_fanout(trigger_id=trigger_id)

    assert len(calls) == 4
    assert _check(trigger_id, people) == [f"Release for Person {n}" for n in range(1, 5)]
