"""Template variables: what a template and a step condition can read of a run, as plain mappings.

Templates read only these mappings (python-liquid never reaches Python attributes), so this
module is the whole list of what a template author can see; docs/templates.md describes it.
"""

from collections.abc import Mapping

from preferences.tokens import Links, preferences_url, unsubscribe_url

from ..models import Message, Recipient, Run, StepType, Tenant, Workflow

# The top-level variables, and the keys of those whose keys are fixed (the editor warns about
# any other key; see checks.py).
VARIABLE_ROOTS = ("data", "recipient", "actor", "tenant", "steps", "workflow",
                  "preferences_url", "unsubscribe_url")
RECIPIENT_KEYS = ("id", "name", "email", "phone", "locale", "timezone", "data")
TENANT_KEYS = ("key", "name", "logo_url", "primary_color", "sender_name", "sender_email",
               "footer", "settings")
WORKFLOW_KEYS = ("key", "name", "category")
# What `steps.<ref>` says of an earlier channel step's message (beside what function steps such
# as a digest keep in the run's state under their ref).
ENGAGEMENT_STATES = ("seen", "read", "clicked", "delivered")
STEP_MESSAGE_KEYS = ("status", "channel", *ENGAGEMENT_STATES)


def recipient_variables(recipient: Recipient | None) -> dict:
    """`recipient`: the person's profile ({} for none), keyed by RECIPIENT_KEYS."""
    if recipient is None:
        return {}
    return {
        "id": recipient.external_id,
        "name": recipient.name,
        "email": recipient.email,
        "phone": recipient.phone,
        "locale": recipient.locale,
        "timezone": recipient.timezone,
        "data": dict(recipient.data or {}),
    }


def tenant_variables(tenant: Tenant | None) -> dict:
    """`tenant`: the tenant's branding and settings ({} for none), keyed by TENANT_KEYS."""
    if tenant is None:
        return {}
    return {
        "key": tenant.key,
        "name": tenant.name,
        "logo_url": tenant.logo_url,
        "primary_color": tenant.primary_color,
        "sender_name": tenant.sender_name,
        "sender_email": tenant.sender_email,
        "footer": tenant.footer,
        "settings": dict(tenant.settings or {}),
    }


def actor_variables(actor) -> dict:
    """The trigger's actor: a known recipient's profile, or the object the caller sent."""
    return actor_variables_many([actor])[0]


def actor_variables_many(actors: list) -> list[dict]:
    """actor_variables of each of `actors` (triggers' actors, None for none), in order, with
    the known recipients among them read in one query."""
    ids = [None if actor is None else
           str(actor.get("id") if isinstance(actor, Mapping) else actor) for actor in actors]
    wanted = {actor_id for actor_id in ids if actor_id is not None}
    known = {r.external_id: r for r in Recipient.objects.filter(external_id__in=wanted)} \
        if wanted else {}
    variables = []
    for actor, actor_id in zip(actors, ids, strict=True):
        if actor is None:
            variables.append({})
        elif actor_id in known:
            variables.append(recipient_variables(known[actor_id]))
        else:
            variables.append(dict(actor) if isinstance(actor, Mapping) else {"id": actor_id})
    return variables


def engagement_at(message: Message, state: str):
    """When `message` reached `state` (one of ENGAGEMENT_STATES), or None if it has not.

    seen: seen, read, clicked or (email) opened; read: read, clicked or opened; clicked: clicked;
    delivered: the provider reported delivery, or any engagement after it, or an in-app message
    written to the inbox (its delivery)."""
    stamps = {
        "clicked": [message.clicked_at],
        "read": [message.read_at, message.clicked_at, message.opened_at],
        "seen": [message.seen_at, message.read_at, message.clicked_at, message.opened_at],
    }
    stamps["delivered"] = [message.delivered_at, *stamps["seen"]]
    if message.channel == StepType.IN_APP and message.status == Message.Status.SENT:
        stamps["delivered"].append(message.sent_at)
    reached = [stamp for stamp in stamps[state] if stamp is not None]
    return min(reached) if reached else None


# What step_variables (and the walk's `done`) read of a run's messages.
RUN_MESSAGE_FIELDS = ("step_ref", "status", "channel", "created_at", "sent_at", "delivered_at",
                      "seen_at", "read_at", "clicked_at", "opened_at")


def run_messages(run: Run) -> list[Message]:
    """The run's messages, with what step_variables reads of them."""
    return list(Message.objects.filter(run_id=run.pk).only(*RUN_MESSAGE_FIELDS))


def run_messages_many(runs: list[Run]) -> list[Message]:
    """run_messages of several runs in one query (each message with its `run_id`)."""
    return list(Message.objects.filter(run_id__in=[run.pk for run in runs])
                .only("run_id", *RUN_MESSAGE_FIELDS))


def step_variables(run: Run, messages: list[Message] | None = None) -> dict:
    """`steps`: per earlier step's ref, what the run's state keeps for it (a function step's
    output) and, for a channel step that made a message, that message's `status` and `channel`
    and whether it was `seen`, `read`, `clicked`, `delivered` (true/false, engagement_at). A
    route step (one message per channel): the `status` and `channel` of the last channel it
    sent, and a state true when any of its messages reached it.
    `messages`: the run's messages if the caller read them already (run_messages)."""
    steps = {ref: dict(value) if isinstance(value, Mapping) else value
             for ref, value in ((run.state or {}).get("steps") or {}).items()}
    if messages is None:
        messages = run_messages(run) if run.pk is not None else []
    latest: dict[str, Message] = {}
    for message in messages:
        entry = steps.get(message.step_ref)
        entry = dict(entry) if isinstance(entry, Mapping) else {}
        reached = {state: engagement_at(message, state) is not None
                   for state in ENGAGEMENT_STATES}
        other = latest.get(message.step_ref)
        if other is None or (message.created_at, str(message.pk)) > (other.created_at,
                                                                        str(other.pk)):
            latest[message.step_ref] = message
            entry.update({"status": message.status, "channel": message.channel})
        if other is not None:  # another channel of the same route step
            reached = {state: value or entry.get(state, False) for state, value in reached.items()}
        entry.update(reached)
        steps[message.step_ref] = entry
    return steps


# The variables that are signed links (two signatures a run to compute).
LINK_VARIABLES = ("preferences_url", "unsubscribe_url")


def run_variables(run: Run, messages: list[Message] | None = None,
                  actor: dict | None = None, links: bool | Links = True) -> dict:
    """Every variable a run's templates and step conditions read, keyed by VARIABLE_ROOTS.
    `messages`: the run's messages if the caller read them already (run_messages); `actor`:
    actor_variables of the run's trigger, if the caller has them (a batch reads them once);
    `links`: False leaves out LINK_VARIABLES, for a caller that knows nothing reads them; a
    preferences.tokens.Links (a batch's, shared by its runs) makes them."""
    workflow = run.workflow
    make = links if isinstance(links, Links) else None
    return {
        # The hosted preference center for this person (and tenant), and the unsubscribe page of
        # this workflow's category (none for critical workflows): for every email footer.
        **({"preferences_url": (make.preferences_url if make else preferences_url)(
                recipient_id=run.recipient_id, tenant_id=run.tenant_id),
            "unsubscribe_url": "" if workflow.critical else (
                make.unsubscribe_url if make else unsubscribe_url)(
                recipient_id=run.recipient_id, tenant_id=run.tenant_id,
                workflow_key=workflow.key, category=workflow.category)} if links else {}),
        "data": dict(run.trigger.data or {}),
        "recipient": recipient_variables(run.recipient),
        "tenant": tenant_variables(run.tenant),
        "actor": dict(actor) if actor is not None else actor_variables(run.trigger.actor),
        "steps": step_variables(run, messages),
        "workflow": {
            "key": run.workflow.key,
            "name": run.workflow.name,
            "category": run.workflow.category,
        },
    }


def preview_variables(*, workflow: Workflow, tenant: Tenant | None = None,
                      recipient: Mapping | None = None, locale: str = "") -> dict:
    """The variables the template editor previews and test-sends with: the workflow's sample
    data as `data`, and `recipient` (by default a sample person) in the template's locale."""
    person = {"id": "preview", "name": "Ada Lovelace", "email": "ada@example.com",
              "phone": "+15550001111", "locale": locale or workflow.default_locale,
              "timezone": "UTC", "data": {}}
    person.update(recipient or {})
    return {
        "data": dict(workflow.sample_data) if isinstance(workflow.sample_data, Mapping) else {},
        "recipient": person,
        "tenant": tenant_variables(tenant),
        "actor": {"id": "sample-actor", "name": "Grace Hopper"},
        "steps": {},
        "workflow": {"key": workflow.key, "name": workflow.name, "category": workflow.category},
        "preferences_url": "https://example.com/p/preview/",
        "unsubscribe_url": "https://example.com/u/preview/",
    }
