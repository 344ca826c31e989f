"""Delivering messages through providers, and applying what providers report back.

- pool.py: which providers a message may go through, in order (the provider pool);
- batch.py: one delivery pass — claim due messages, pick each one's next provider, rounds of
  calls until each message has an outcome (retry, fail over);
- calls.py: a round of provider calls, concurrently, and their DeliveryAttempt rows (written
  before each request leaves; an SMTP call's at its point of no return, with gate.py and the
  SMTP keeper, keeper.py / keeper_client.py);
- outcomes.py: each message's outcome, timeline, events and analytics, in one transaction;
- status.py: the message status state machine — status events recorded and applied, early
  events replayed, an SMS the carrier refused failed over to the next provider;
- recovery.py: what became of a message whose worker died during a provider call;
- urls.py: the providers' status callbacks, mounted with status.message_event_record.

Providers (notifications/providers/) are adapters only and never import this package.
"""

from .batch import claim_batch, deliver, deliver_batch, deliver_claimed
from .calls import backoff_seconds
from .recovery import message_mark_outcome_unknown, message_mark_sent_from_ledger

__all__ = ["backoff_seconds", "claim_batch", "deliver", "deliver_batch", "deliver_claimed",
           "message_mark_outcome_unknown", "message_mark_sent_from_ledger"]
