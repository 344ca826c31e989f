"""Knock- and Novu-compatible APIs (`/knock/`, `/novu/`) and the importers of their workflow
exports: thin adapters that translate those vendors' requests, answers and errors onto
Clarion's own services (notifications, preferences). They own no tables and no engine."""
