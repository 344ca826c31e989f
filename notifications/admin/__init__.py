"""The admin a product manager uses: workflows with their steps and templates, runs as timelines.

One module per area, each registering its models: `tenants` (tenants, API keys), `audience`
(recipients, topics), `schedules`, `workflows` (workflows, steps), `templates` (the template
editor and versions; its form, preview and diff in `template_editor`, shared with a draft's
template pages in `draft_templates`), `layouts`, `ledgers` (triggers, runs, messages, delivery
attempts, step logs, idempotency records, all read-only; a run's page is its timeline) and
`providers` (provider configs). `find` is the header's search box (mounted in
clarion/urls.py); `audit` shows the audit log. They build on the bases in `clarion.admin` and
import nothing from each other but the template editor's parts. Every write that is more than
editing a row's plain fields goes through `services`.
"""

# Importing an area registers its models (Django's autodiscovery imports this package).
from . import (  # noqa: F401
    audience,
    audit,
    layouts,
    ledgers,
    providers,
    schedules,
    templates,
    tenants,
    workflows,
)
