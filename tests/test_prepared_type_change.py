"""Kept statements (clarion.db.prepared_cursor, numbered_cursor) after a migration changes the
type of a column they return, made on another connection as `migrate` makes it: PostgreSQL
refuses the statement a connection prepared before ("cached plan must not change result type").
Outside a transaction the statement is run again once, unprepared, and works from then on
(the first test fails without clarion.db.cursors._Replanned); inside one its transaction fails,
and the statement works again after its rollback (psycopg's own doing, pinned here)."""

import pytest
from django.db import NotSupportedError, connection, transaction

from clarion import db

TABLE = "clarion_test_type_change"

CURSORS = {
    "numbered": (db.numbered_cursor, f"SELECT amount FROM {TABLE} WHERE id = $1"),
    "prepared": (db.prepared_cursor, f"SELECT amount FROM {TABLE} WHERE id = %s"),
}


@pytest.fixture
def scratch_table():
    """A table of one row (id 1, amount 7, an integer column), dropped afterwards."""
    if (connection.vendor != "postgresql"
            or connection.settings_dict["OPTIONS"].get("prepare_threshold") is None):
        pytest.skip("statements are kept prepared on PostgreSQL with prepare_threshold")
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {TABLE} (id integer PRIMARY KEY, amount integer)")
        cursor.execute(f"INSERT INTO {TABLE} VALUES (1, 7)")
    yield
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")


def _amount(kind: str):
    make_cursor, sql = CURSORS[kind]
    with make_cursor() as cursor:
        cursor.execute(sql, [1])
        return cursor.fetchone()


def _retyped(kind: str) -> None:
    """The column's type changed by another connection (as a migration in another process
    changes it; on this one psycopg would forget its prepared statements)."""
    other = connection.copy()
    try:
        with other.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {TABLE} ALTER COLUMN amount TYPE {kind}")
    finally:
        other.close()


def _prepared_then_retyped(kind: str) -> None:
    """The statement run until prepared on this connection, then the column's type changed to
    numeric."""
    threshold = connection.settings_dict["OPTIONS"]["prepare_threshold"]
    for _ in range(threshold + 1):
        assert _amount(kind) == (7,)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
                       [f"%{TABLE}%"])
        assert cursor.fetchone() == (1,)
    _retyped("numeric(10, 2)")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", CURSORS)
def test_a_kept_statement_outside_a_transaction_works_after_its_columns_type_changes(
        scratch_table, kind):
    _prepared_then_retyped(kind)

    threshold = connection.settings_dict["OPTIONS"]["prepare_threshold"]
    for _ in range(threshold + 2):  # the first run again unprepared, then prepared anew
        (amount,) = _amount(kind)
        assert str(amount) == "7.00"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", CURSORS)
def test_a_kept_statement_inside_a_transaction_fails_it_once_after_its_columns_type_changes(
        scratch_table, kind):
    _prepared_then_retyped(kind)

    error = "cached plan must not change result type"
    with pytest.raises(NotSupportedError, match=error), transaction.atomic():
        _amount(kind)
    with transaction.atomic():
        (amount,) = _amount(kind)
    assert str(amount) == "7.00"


@pytest.mark.django_db(transaction=True)
def test_a_kept_statement_failed_in_a_savepoint_works_later_in_its_transaction(scratch_table):
    # A savepoint rolled back does not end the transaction; the statement works after it, in
    # the same transaction and outside one.
    _prepared_then_retyped("numbered")

    with transaction.atomic():
        with pytest.raises(NotSupportedError), transaction.atomic():
            _amount("numbered")
        (amount,) = _amount("numbered")
        assert str(amount) == "7.00"
    (amount,) = _amount("numbered")
    assert str(amount) == "7.00"
