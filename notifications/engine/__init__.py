"""The workflow engine: walks a run's steps from its cursor until it waits or ends.

One module per part: `walk` (the loop, and where a run resumes after an edit), `channel_steps`
(preferences, quiet hours, sending), `function_steps` (delay, throttle, branch…), `route`
(cheapest channel first, stop on success), `validation`
(what a step's JSON may say). Callers import from `notifications.engine`.
"""

from .channel_steps import channel_address, layout_for_tenant, locale_candidates, select_template
from .validation import (
    DURATION_UNITS,
    ENGAGEMENT_STATES,
    ROUTE_CHANNELS,
    SUPPORTED_STEP_TYPES,
    StepConfigError,
    delay_until,
    validate_channel_config,
    validate_delay_config,
    validate_route_config,
    validate_throttle_config,
    validate_unless,
)
from .walk import STEP_MOVED_BEHIND, STEP_REMOVED, advance

__all__ = [
    "DURATION_UNITS", "STEP_MOVED_BEHIND", "STEP_REMOVED", "SUPPORTED_STEP_TYPES",
    "StepConfigError", "advance", "channel_address", "delay_until", "layout_for_tenant",
    "locale_candidates", "select_template", "validate_channel_config", "validate_delay_config",
    "ENGAGEMENT_STATES", "ROUTE_CHANNELS", "validate_route_config", "validate_throttle_config",
    "validate_unless",
]
