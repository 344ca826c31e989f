"""Analytics: hourly rollups per workflow, channel, tenant and provider, kept by the workers.

Where a message's fate is decided (the engine, delivery, provider status events, inbox marks,
trigger) a small `RollupDelta` row is written in the same transaction; every minute
`analytics.tasks.fold` adds the deltas into `HourlyRollup` rows. The dashboard and /metrics
read the rollups (plus the deltas not folded yet), never the message tables, so they stay fast
at millions of messages, and the counts survive retention and erasure (no person is named).
"""
