"""The workflow engine: walks a run's steps from its cursor until it waits or ends.

One module per part: `walk` (the loop, and where a run resumes after an edit), `channel_steps`
(preferences, quiet hours, sending), `function_steps` (delay, throttle, branch…), `digest`
(batches of events), `route` (cheapest channel first, stop on success), `validation` (what a
step's JSON may say), `writes` (what passes decide, written a table at a time), `batch` (many
runs in one transaction). Callers import from `notifications.engine`.
"""

from .batch import advance_batch, advance_new_runs
from .branches import effective_steps
from .channel_steps import channel_address, layout_for_tenant, locale_candidates, select_template
from .claim import lane_release, lane_touch, lanes_hold, runs_claim, runs_due_exist
from .digest import batch_close_due, window_closes_at
from .validation import (
    BRANCHING_STEP_TYPES,
    DEFAULT_BRANCH,
    DURATION_UNITS,
    ENGAGEMENT_STATES,
    ROUTE_CHANNELS,
    SUPPORTED_STEP_TYPES,
    StepConfigError,
    delay_until,
    duration_seconds,
    validate_approval_config,
    validate_branches,
    validate_channel_config,
    validate_delay_config,
    validate_digest_config,
    validate_route_config,
    validate_throttle_config,
    validate_unless,
)
from .walk import STEP_MOVED_BEHIND, STEP_REMOVED, advance

__all__ = [
    "BRANCHING_STEP_TYPES", "DEFAULT_BRANCH", "effective_steps", "validate_branches",
    "DURATION_UNITS", "STEP_MOVED_BEHIND", "STEP_REMOVED", "SUPPORTED_STEP_TYPES",
    "StepConfigError", "advance", "advance_batch", "advance_new_runs", "channel_address",
    "runs_claim", "runs_due_exist", "lanes_hold", "lane_touch", "lane_release", "delay_until",
    "duration_seconds",
    "layout_for_tenant",
    "locale_candidates", "select_template", "validate_channel_config", "validate_delay_config",
    "ENGAGEMENT_STATES", "ROUTE_CHANNELS", "validate_route_config", "validate_throttle_config",
    "validate_unless", "validate_approval_config", "batch_close_due", "validate_digest_config",
    "window_closes_at",
]
