"""Sixteen threads send the same trigger with the same Idempotency-Key at once, each on its own
PostgreSQL connection: one trigger, one set of runs, and every answer is either the first
response (replayed) or a 409 with Retry-After."""

import pytest
from django.db import connection

from notifications.models import Run, Trigger

from ..conftest import at_once, client_for, in_app_step

THREADS = 16

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql",
                       reason="row locks under concurrency are PostgreSQL's"),
]


# Ids alone: a transaction of several statements; profiles: on PostgreSQL one statement
# (services/trigger_statement.py), whose record's INSERT waits for the first request's.
@pytest.mark.parametrize("recipients", [
    ["u1", "u2"], [{"id": "u1", "name": "U1"}, {"id": "u2", "name": "U2"}]],
    ids=["ids", "profiles"])
def test_sixteen_concurrent_triggers_with_one_idempotency_key_trigger_once(api_key,
                                                                            make_workflow,
                                                                            recipients):
    make_workflow("welcome", steps=[in_app_step()])
    body = {"recipients": recipients, "data": {"order": 7}}

    def send(index: int) -> tuple:
        response = client_for(api_key[1]).post("/api/v1/workflows/welcome/trigger", body,
                                               HTTP_IDEMPOTENCY_KEY="race-1")
        return (response.status_code, response.json(),
                response.get("Retry-After"), response.get("Idempotent-Replayed"))

    answers = at_once(THREADS, send)
    assert all(answer is not None for answer in answers), answers
    assert Trigger.objects.count() == 1
    trigger = Trigger.objects.get()
    assert Run.objects.filter(trigger=trigger).count() == 2
    accepted = [answer for answer in answers if answer[0] == 202]
    conflicts = [answer for answer in answers if answer[0] == 409]
    assert len(accepted) + len(conflicts) == THREADS, answers
    # One first response; the rest replay it.
    assert len([answer for answer in accepted if answer[3] is None]) == 1, answers
    first = accepted[0][1]
    assert first["trigger_id"] == str(trigger.id)
    assert all(answer[1] == first for answer in accepted)
    assert all(answer[3] == "true" for answer in accepted if answer[3] is not None)
    assert all(answer[2] == "1" and answer[1]["error"] == "idempotency_key_in_use"
               for answer in conflicts)
    print(f"\nidempotency race: {len(accepted)} accepted (1 first, "
          f"{len(accepted) - 1} replayed), {len(conflicts)} 409s")


def test_one_idempotency_key_sent_at_once_with_three_bodies_triggers_once(api_key,
                                                                          make_workflow):
    """The same key with three different bodies at once, through both of the trigger's write
    paths (profiles: on PostgreSQL one statement; ids alone: a transaction): one trigger, the
    winner's body answered 202 (first or replayed) or 409 while it runs, every other 422."""
    make_workflow("welcome", steps=[in_app_step()])
    bodies = [{"recipients": [{"id": "u1", "name": "U1"}], "data": {"order": 7}},
              {"recipients": [{"id": "u1", "name": "U1"}], "data": {"order": 8}},
              {"recipients": ["u1"], "data": {"order": 7}}]

    def send(index: int) -> tuple:
        response = client_for(api_key[1]).post("/api/v1/workflows/welcome/trigger",
                                               bodies[index % 3],
                                               HTTP_IDEMPOTENCY_KEY="race-bodies")
        return (index % 3, response.status_code, response.json())

    answers = at_once(THREADS, send)
    assert all(answer is not None for answer in answers), answers
    trigger = Trigger.objects.get()
    assert Run.objects.filter(trigger=trigger).count() == 1
    winner = next(n for n, body in enumerate(bodies) if body["data"] == trigger.data
                  and body["recipients"] == trigger.recipients)
    for body, status, answer in answers:
        if body == winner:
            assert status in (202, 409), answers
            if status == 202:
                assert answer["trigger_id"] == str(trigger.id)
        else:
            assert (status, answer["error"]) == (422, "idempotency_key_reused"), answers
