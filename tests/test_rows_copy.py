"""clarion.db.rows_copy: what it stores is what bulk_create stores, on PostgreSQL (COPY) and
SQLite (bulk_create), and with `keep_times` the objects' own auto_now times."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from clarion.db import rows_copy
from notifications.models import Tenant

SET = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.django_db
def test_rows_copy_stamps_auto_now_times_now_as_bulk_create_does():
    before = timezone.now()
    tenants = [Tenant(key=f"t{i}", name=f"T {i}", settings={"n": i}, created_at=SET,
                      updated_at=SET) for i in range(3)]
    rows_copy(Tenant, tenants)

    stored = list(Tenant.objects.order_by("key"))
    assert [(t.key, t.settings) for t in stored] == [("t0", {"n": 0}), ("t1", {"n": 1}),
                                                     ("t2", {"n": 2})]
    assert all(t.created_at >= before and t.updated_at >= before for t in stored)
    assert all(not t._state.adding for t in tenants)


@pytest.mark.django_db
def test_rows_copy_keeping_times_stores_the_objects_own_times():
    tenants = [Tenant(key=f"t{i}", name=f"T {i}", created_at=SET + timedelta(seconds=i),
                      updated_at=SET + timedelta(hours=1)) for i in range(3)]
    rows_copy(Tenant, tenants, keep_times=True)

    assert list(Tenant.objects.order_by("key").values_list("created_at", "updated_at")) == [
        (SET + timedelta(seconds=i), SET + timedelta(hours=1)) for i in range(3)]
    assert all(not t._state.adding for t in tenants)
