"""/api/v1/: each app's part of the API, then the API's JSON 404 for every other path."""

from django.urls import include, path, re_path

from notifications.api.views import UnknownEndpointView

urlpatterns = [
    path("", include("notifications.api.urls")),
    path("", include("preferences.api_urls")),
    path("", include("inbox.api_urls")),
    path("", include("events.api_urls")),
    # Last: every other path answers the API's JSON 404.
    re_path(r"", UnknownEndpointView.as_view(), name="unknown-endpoint"),
]
