"""events' part of /api/v1/: event endpoints."""

from django.urls import path

from . import api

urlpatterns = [
    path("event-endpoints", api.EventEndpointListView.as_view(), name="event-endpoints"),
    path("event-endpoints/<str:endpoint_id>", api.EventEndpointView.as_view(),
         name="event-endpoint"),
]
