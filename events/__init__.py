"""Outbound events: endpoints that operators subscribe to Clarion's events (message status,
runs, preference changes), an outbox written in the same transaction as the change that causes
an event, and delivery through the queue in the Standard Webhooks format, in order per
recipient, retried with backoff, every attempt logged."""
