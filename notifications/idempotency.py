"""Idempotency-Key records: one request per (API key, key) triggers; a repeat is answered from
the record. The rule is Stripe's and Knock's, and the IETF draft "The Idempotency-Key HTTP
Header Field" (its error scenarios); services.trigger_workflow_idempotent is the caller."""

from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from clarion.db import relaxed_commit

from .models import ApiKey, IdempotencyRecord


class IdempotencyConflict(Exception):
    """The key's first request is still running (409)."""


class IdempotencyMismatch(Exception):
    """The key was used with a different request (422)."""


def idempotency_begin(*, api_key: ApiKey, key: str,
                      request_hash: str) -> tuple[IdempotencyRecord, bool]:
    """Claim `key` for this request, or return the stored record to replay.

    Returns (record, replay): replay is True when the first response should be sent back.
    Raises IdempotencyConflict or IdempotencyMismatch (see services.trigger_workflow_idempotent).
    """
    conf = settings.CLARION
    now = timezone.now()
    for _ in range(2):
        try:
            # Not flushed at once: the trigger's own commit, right after, flushes it too.
            with relaxed_commit():
                record = IdempotencyRecord.objects.create(api_key=api_key, key=key,
                                                          request_hash=request_hash)
            return record, False
        except IntegrityError:
            record = IdempotencyRecord.objects.filter(api_key=api_key, key=key).first()
            if record is None:
                continue
            age = (now - record.created_at).total_seconds()
            expired = age > conf["IDEMPOTENCY_TTL_SECONDS"]
            abandoned = record.in_progress and age > conf["IDEMPOTENCY_LOCK_SECONDS"]
            if expired or abandoned:
                IdempotencyRecord.objects.filter(pk=record.pk).delete()
                continue
            # Still running: its outcome is unknown whatever this request's body (§4: a 409).
            if record.in_progress:
                raise IdempotencyConflict() from None
            if record.request_hash != request_hash:
                raise IdempotencyMismatch() from None
            return record, True
    raise IdempotencyConflict()


def idempotency_finish(*, record: IdempotencyRecord, status: int, body) -> None:
    record.response_status = status
    record.response_body = body
    record.save(update_fields=["response_status", "response_body"])


def idempotency_abandon(*, record: IdempotencyRecord) -> None:
    record.delete()
