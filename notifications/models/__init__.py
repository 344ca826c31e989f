"""Domain model of DESIGN.md §2. Behaviour lives in services/ and engine/, not here.

One module per concept: base (ids, validators, choices), audience, workflows, runs,
delivery. Import from `notifications.models`."""

from .audience import (  # noqa: F401
    ApiKey,
    ChannelData,
    Recipient,
    Subscription,
    Tenant,
    Topic,
)
from .base import (  # noqa: F401
    RECIPIENT_ID_MAX_LENGTH,
    Channel,
    StepType,
    color_validator,
    key_validator,
    validate_recipient_id,
)
from .delivery import (  # noqa: F401
    DeliveryAttempt,
    Message,
    MessageEvent,
    ProviderConfig,
    RateLimitCounter,
    ThrottleCounter,
)
from .runs import (  # noqa: F401
    AdvanceLane,
    Approval,
    DigestBatch,
    DigestEvent,
    IdempotencyRecord,
    Run,
    StepLog,
    Trigger,
)
from .workflows import (  # noqa: F401
    Layout,
    Schedule,
    ScheduleZone,
    Step,
    Template,
    TemplateVersion,
    Workflow,
    WorkflowVersion,
)
