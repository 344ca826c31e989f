"""The core: tenants, API keys, recipients, topics, workflows and templates, triggers, runs,
messages and their delivery ledger, the engine that walks runs, and the server API."""
