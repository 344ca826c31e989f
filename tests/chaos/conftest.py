"""The fault tests use the provider tests' fixtures: ProviderConfig rows."""

from tests.notifications.providers.conftest import provider_config  # noqa: F401
