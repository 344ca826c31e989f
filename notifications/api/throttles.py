"""Rate limits on API endpoints, as DRF throttles backed by notifications/ratelimit.py (Redis or
the database), so that every web process counts against the same limit. DRF answers a refused
call 429 with `Retry-After`, in the API's error shape."""

from rest_framework.throttling import BaseThrottle

from ..ratelimit import trigger_rate_limit_hit


class TriggerRateThrottle(BaseThrottle):
    """CLARION["TRIGGER_RATE_LIMIT"] trigger calls per API key per
    CLARION["TRIGGER_RATE_LIMIT_WINDOW_SECONDS"] (OWASP API4)."""

    def allow_request(self, request, view) -> bool:
        api_key = request.auth
        if api_key is None:  # authentication refuses it first; nothing to count against
            return True
        verdict = trigger_rate_limit_hit(api_key_prefix=api_key.prefix)
        self._wait = verdict.retry_after
        return verdict.allowed

    def wait(self) -> float | None:
        return getattr(self, "_wait", None) or None
