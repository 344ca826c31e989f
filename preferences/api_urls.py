"""preferences' part of /api/v1/: a recipient's preferences and a tenant's defaults."""

from django.urls import path

from . import api

urlpatterns = [
    path("recipients/<segment:recipient_id>/preferences",
         api.RecipientPreferencesView.as_view(), name="recipient-preferences"),
    path("tenants/<str:key>/preferences", api.TenantPreferencesView.as_view(),
         name="tenant-preferences"),
]
