"""inbox's part of /api/v1/: the server side (inbox tokens, tenants' inbox secrets; API key)
and the recipient side under inbox/ (inbox/urls.py)."""

from django.urls import include, path

from . import api

urlpatterns = [
    path("recipients/<segment:recipient_id>/inbox-token", api.InboxTokenView.as_view(),
         name="recipient-inbox-token"),
    path("tenants/<str:key>/inbox-secret", api.TenantInboxSecretView.as_view(),
         name="tenant-inbox-secret"),
    path("inbox/", include("inbox.urls")),
]
