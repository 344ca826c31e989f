"""An advance batch's reads by statements kept per process (engine.batch.runs_locked,
clarion.db.rows_by_pk): the same runs, recipients and locks as the query sets they replace."""

import psycopg
import pytest
from django.db import connection, transaction

from notifications.engine.batch import runs_locked
from notifications.models import Run
from notifications.services import TriggerRequest, trigger_workflow

from ..conftest import email_step, in_app_step

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif("connection.vendor != 'postgresql'")]


def _fields(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in type(obj)._meta.concrete_fields}


def test_runs_locked_reads_what_the_query_set_reads_and_holds_their_locks(
        make_workflow, acme, django_assert_num_queries):
    workflow = make_workflow("w", steps=[in_app_step(), email_step()])
    ids = [str(trigger_workflow(TriggerRequest(workflow=workflow, tenant=acme, recipients=[
        {"id": f"p{i}", "email": f"p{i}@example.com", "data": {"n": [i, None]}}],
        data={"x": i}))[1][0].pk) for i in range(3)]
    expected = list(Run.objects.select_related("recipient").filter(pk__in=ids).order_by("pk"))
    with transaction.atomic():
        with django_assert_num_queries(1):
            runs = runs_locked([*ids, ids[0]])
            recipients = [run.recipient for run in runs]
        assert [run.pk for run in runs] == [run.pk for run in expected]
        assert [_fields(run) for run in runs] == [_fields(run) for run in expected]
        assert [_fields(r) for r in recipients] == [_fields(run.recipient) for run in expected]
        assert all(run._state.db == "default" and not run._state.adding for run in runs)
        with psycopg.connect(**connection.get_connection_params()) as other:
            with pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute("SELECT 1 FROM notifications_run WHERE id = %s FOR UPDATE NOWAIT",
                              [ids[1]])
            other.rollback()
            # The recipients are read, not locked (FOR UPDATE OF the runs only).
            other.execute("SELECT 1 FROM notifications_recipient WHERE id = %s "
                          "FOR UPDATE NOWAIT", [runs[1].recipient_id])
    assert runs_locked([]) == []
