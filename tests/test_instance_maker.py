"""clarion.db.instance_maker: the instances it makes are those Model(**kwargs) makes (every
field's value, defaults included, the related objects cached), without a query to read a
related object back; unknown names are refused; receivers of pre_init/post_init still run."""

import uuid

import pytest
from django.db.models.signals import post_init
from django.utils import timezone

from clarion.db import instance_maker
from notifications.models import Message, Run, StepLog, Trigger
from tests.conftest import email_step

pytestmark = pytest.mark.django_db


def fields_of(obj) -> dict:
    return {k: v for k, v in obj.__dict__.items() if k != "_state"}


def test_a_message_is_made_as_model_init_makes_it(run_of, django_assert_num_queries):
    run = run_of(email_step())
    run.refresh_from_db()
    step = run.workflow.steps.get()
    version = step.templates.get().published_version
    now = timezone.now()
    mine = instance_maker(Message)(
        {"run": run, "step": step, "recipient": run.recipient, "workflow": run.workflow,
         "tenant": run.tenant, "template_version": version},
        step_ref="mail", channel="email", created_at=now, updated_at=now, to="a@example.com",
        content={"subject": "Hi"})
    django = Message(run=run, step=step, recipient=run.recipient, workflow=run.workflow,
                     tenant=run.tenant, template_version=version, step_ref="mail",
                     channel="email", created_at=now, updated_at=now, to="a@example.com",
                     content={"subject": "Hi"})
    assert isinstance(mine.id, uuid.UUID) and mine.id != django.id  # its own default, called
    mine_fields, django_fields = fields_of(mine), fields_of(django)
    mine_fields.pop("id"), django_fields.pop("id")
    assert mine_fields == django_fields
    assert mine.status == Message.Status.QUEUED and mine.attempts == 0
    assert mine.content is not Message().content  # a callable default: a new dict each
    assert (mine._state.adding, mine._state.db) == (django._state.adding, django._state.db)
    with django_assert_num_queries(0):
        assert (mine.run, mine.step, mine.recipient, mine.workflow, mine.tenant,
                mine.template_version) == (run, step, run.recipient, run.workflow, run.tenant,
                                           version)
    none = instance_maker(Message)({"run": run, "tenant": None}, step_ref="x", channel="sms")
    assert none.tenant_id is None and none.tenant is None and none.run_id == run.pk


def test_a_step_log_is_made_as_model_init_makes_it(run_of):
    run = run_of(email_step())
    mine = instance_maker(StepLog)(run_id=run.pk, step_ref="mail", event="queued",
                                   detail={"to": "a"})
    django = StepLog(run_id=run.pk, step_ref="mail", event="queued", detail={"to": "a"})
    assert fields_of(mine) == fields_of(django)
    mine.save()
    assert StepLog.objects.get(pk=mine.pk).detail == {"to": "a"}


def test_unknown_names_are_refused():
    with pytest.raises(TypeError, match=r"StepLog has no field named \['colour'\]"):
        instance_maker(StepLog)(colour="red")
    with pytest.raises(TypeError, match=r"Message has no field named \['nobody'\]"):
        instance_maker(Message)({"nobody": None})


def test_init_receivers_still_hear_of_each_instance():
    heard = []

    def receiver(sender, instance, **kwargs):
        heard.append(instance)

    post_init.connect(receiver, sender=StepLog)
    try:
        entry = instance_maker(StepLog)(step_ref="x", event="queued")
    finally:
        post_init.disconnect(receiver, sender=StepLog)
    assert heard == [entry]


def test_a_one_to_one_object_is_cached_both_ways(run_of, django_assert_num_queries):
    from inbox.models import InboxItem

    run = run_of(email_step())
    message = instance_maker(Message)({"run": run, "recipient": run.recipient},
                                      step_ref="x", channel="in_app")
    item = instance_maker(InboxItem)({"message": message}, recipient_id=run.recipient_id)
    with django_assert_num_queries(0):
        assert item.message is message and item.message_id == message.id
        assert message.inbox_item is item
    django = InboxItem(message=message, recipient_id=run.recipient_id)
    assert {**fields_of(item), "id": None} == {**fields_of(django), "id": None}


def test_a_triggers_run_and_trigger_rows_are_made_as_model_init_makes_them(run_of, monkeypatch):
    """The trigger's hot path makes its Trigger and Runs this way (with their ids given)."""
    run = run_of(email_step())
    run.refresh_from_db()
    drawn = []
    for model in (Run, Trigger):  # a given id's default (uuid4) is not drawn, as Model() does
        pk = model._meta.pk
        monkeypatch.setitem(pk.__dict__, "_get_default", lambda: drawn.append(1) or uuid.uuid4())
    run_id, trigger_id = uuid.uuid4(), uuid.uuid4()
    related = {"workflow": run.workflow, "tenant": run.tenant}
    kwargs = {"id": trigger_id, "actor": {"id": "a"}, "data": {"n": 1},
              "recipients": ["r1"], "idempotency_key": "k", "runs_created": 1}
    mine = instance_maker(Trigger)(related, **kwargs)
    django = Trigger(**related, **kwargs)
    assert fields_of(mine) == fields_of(django)
    mine_run = instance_maker(Run)({**related, "trigger": mine}, id=run_id,
                                   recipient_id=run.recipient_id,
                                   workflow_version_id=run.workflow.published_version_id)
    django_run = Run(**related, trigger=django, id=run_id, recipient_id=run.recipient_id,
                     workflow_version_id=run.workflow.published_version_id)
    assert fields_of(mine_run) == fields_of(django_run)
    assert mine_run.state is not django_run.state  # a callable default: a new one each
    assert drawn == []
