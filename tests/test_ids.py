"""clarion/ids.py: the rows Clarion writes per notification have time-ordered ids (UUID version
7, RFC 9562 section 5.7), so their indexes are written at their right-hand pages (see the
module's docstring), and their lowest bits still spread the advance lanes evenly."""

import time
import uuid
from collections import Counter

import pytest
from django.apps import apps
from django.db import models

from clarion.ids import new_id
from notifications import tasks
from notifications.models import Message
from tests.conftest import email_step, in_app_step


def test_new_ids_are_version_7_in_the_order_they_were_made_with_their_time():
    before = int(time.time() * 1000)
    ids = [new_id() for _ in range(2000)]
    after = int(time.time() * 1000)
    assert all(isinstance(value, uuid.UUID) and value.version == 7 for value in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    stamps = [value.int >> 80 for value in ids]  # the first 48 bits: Unix time in ms
    assert before <= stamps[0] <= stamps[-1] <= after


def test_the_lowest_bits_spread_evenly_over_the_advance_lanes():
    """The lane of a trigger's runs is its first run id's `int % ADVANCE_LANES`
    (services.triggers._lane_candidates): ids made one after the other, within the same
    millisecond, must not all fall in one lane."""
    lanes = Counter(new_id().int % 4 for _ in range(8000))
    assert set(lanes) == {0, 1, 2, 3}
    assert min(lanes.values()) > 1500  # 2000 each on average


def test_every_uuid_primary_key_defaults_to_a_version_7_id():
    """A model added with `default=uuid.uuid4` would scatter its indexes again."""
    keyed = [model for model in apps.get_models()
             if isinstance(model._meta.pk, models.UUIDField)
             and model._meta.app_label in ("notifications", "inbox", "preferences", "events",
                                           "analytics")]
    assert {model.__name__ for model in keyed} >= {"Trigger", "Run", "Message", "Event"}
    for model in keyed:
        assert model._meta.pk.default is new_id, model.__name__


@pytest.mark.django_db
def test_a_notifications_rows_get_version_7_ids(run_of):
    run = run_of(in_app_step(), email_step())
    tasks.advance_run(str(run.pk))
    messages = list(Message.objects.filter(run=run))
    assert {message.channel for message in messages} == {"in_app", "email"}
    for value in (run.pk, run.trigger_id, *(message.pk for message in messages)):
        assert value.version == 7
