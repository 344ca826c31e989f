"""Idempotency-Key records: one request per (API key, key) triggers; a repeat is answered from
the record. The rule is Stripe's and Knock's, and the IETF draft "The Idempotency-Key HTTP
Header Field" (its error scenarios); services.trigger_workflow_idempotent is the caller.

A record is written with its answer in the trigger's own transaction, before the trigger's rows:
a concurrent request with the same key waits on the record's unique index until that transaction
ends, then replays the answer (committed) or takes the key (rolled back). A record without an
answer (`in_progress`) is one an older Clarion wrote before its trigger; it is answered 409 until
IDEMPOTENCY_LOCK_SECONDS have passed."""

from django.conf import settings
from django.db import connection
from django.utils import timezone

from clarion.db import pipelined_cursor

from .models import ApiKey, IdempotencyRecord


class IdempotencyConflict(Exception):
    """The key's first request is still running (409)."""


class IdempotencyMismatch(Exception):
    """The key was used with a different request (422)."""


def _insert(*, api_key: ApiKey, key: str, request_hash: str, status: int, body) -> bool:
    """INSERT the record unless (api_key, key) has one; True when inserted. One statement (the
    ORM's create would need a savepoint around a possible IntegrityError), sent with the
    transaction's BEGIN when it is the first (clarion.db.pipelined_cursor)."""
    meta, ops = IdempotencyRecord._meta, connection.ops
    values = {"api_key_id": api_key.pk, "key": key, "request_hash": request_hash,
              "response_status": status, "response_body": body, "created_at": timezone.now()}
    fields = [meta.get_field(name) for name in values]
    params = [field.get_db_prep_save(values[field.attname], connection) for field in fields]
    columns = ", ".join(ops.quote_name(field.column) for field in fields)
    unique = ", ".join(ops.quote_name(meta.get_field(name).column) for name in ("api_key", "key"))
    with pipelined_cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {ops.quote_name(meta.db_table)} ({columns}) "
            f"VALUES ({', '.join(['%s'] * len(params))}) "
            f"ON CONFLICT ({unique}) DO NOTHING RETURNING {ops.quote_name(meta.pk.column)}",
            params)
        return cursor.fetchone() is not None


def idempotency_record(*, api_key: ApiKey, key: str, request_hash: str, status: int,
                       body) -> IdempotencyRecord | None:
    """Inside the caller's transaction: store `status` and `body` (any JSON-able value) as the
    answer to `key`, or return the record to replay when the key already has one.

    Returns None when stored (the caller then does the work; rolling back takes the record back
    with it), else the stored record. Waits while another transaction holds the key (until it
    ends). Raises IdempotencyConflict for a record still without an answer, IdempotencyMismatch
    when the stored `request_hash` differs (see services.trigger_workflow_idempotent).
    """
    if not connection.in_atomic_block:
        raise RuntimeError("idempotency_record needs the caller's transaction")
    for _ in range(2):
        if _insert(api_key=api_key, key=key, request_hash=request_hash, status=status,
                   body=body):
            return None
        record = IdempotencyRecord.objects.filter(api_key=api_key, key=key).first()
        if record is None:  # deleted meanwhile (expired)
            continue
        if _outdated(record):
            IdempotencyRecord.objects.filter(pk=record.pk).delete()
            continue
        return _replayable(record, request_hash)
    raise IdempotencyConflict()


def idempotency_replay(*, api_key: ApiKey, key: str, request_hash: str,
                       record: IdempotencyRecord | None = None) -> IdempotencyRecord | None:
    """The record to replay for `key`, after a statement that found the key taken
    (services/trigger_statement.py): `record` as that statement read it, else read now outside
    any transaction. None when there is none to replay (gone, expired or abandoned meanwhile:
    the caller then takes idempotency_record's path, which deals with those in a transaction).
    Raises as idempotency_record does."""
    if record is None:
        record = IdempotencyRecord.objects.filter(api_key=api_key, key=key).first()
    if record is None or _outdated(record):
        return None
    return _replayable(record, request_hash)


def _outdated(record: IdempotencyRecord) -> bool:
    """Whether `record` is past IDEMPOTENCY_TTL_SECONDS, or still without an answer past
    IDEMPOTENCY_LOCK_SECONDS (its request abandoned): its key may be taken again."""
    conf = settings.CLARION
    age = (timezone.now() - record.created_at).total_seconds()
    return age > conf["IDEMPOTENCY_TTL_SECONDS"] or (
        record.in_progress and age > conf["IDEMPOTENCY_LOCK_SECONDS"])


def _replayable(record: IdempotencyRecord, request_hash: str) -> IdempotencyRecord:
    """`record` when its answer may be replayed to a request hashed `request_hash`."""
    # Still running: its outcome is unknown whatever this request's body (§4: a 409).
    if record.in_progress:
        raise IdempotencyConflict()
    if record.request_hash != request_hash:
        raise IdempotencyMismatch()
    return record

