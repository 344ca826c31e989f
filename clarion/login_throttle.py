"""The admin login throttled against password guessing: django-axes counts failed logins per
username and address and locks them out (AXES_FAILURE_LIMIT failures, AXES_COOLOFF_TIME)."""

from axes.backends import AxesStandaloneBackend


class LoginThrottleBackend(AxesStandaloneBackend):
    """axes' lockout check for logins that come with a request (the admin's login form). A
    login without one (`Client.login` in tests, a management command) is not a guess over the
    web: axes would refuse it outright, so it goes on to the next backend."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)
