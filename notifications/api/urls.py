from django.urls import include, path, re_path

from inbox.api import InboxTokenView, TenantInboxSecretView
from preferences import api as preferences_api

from ..providers.api import ProviderView
from . import views

urlpatterns = [
    path("workflows", views.WorkflowListView.as_view(), name="workflow-list"),
    path("workflows/<str:key>", views.WorkflowDetailView.as_view(), name="workflow-detail"),
    path("workflows/<str:key>/trigger", views.TriggerView.as_view(), name="workflow-trigger"),
    path("workflows/<str:key>/trigger/bulk", views.BulkTriggerView.as_view(),
         name="workflow-trigger-bulk"),
    path("workflows/<str:key>/cancel", views.CancelView.as_view(), name="workflow-cancel"),
    path("triggers/<uuid:trigger_id>", views.TriggerDetailView.as_view(), name="trigger-detail"),
    path("runs/<uuid:run_id>", views.RunDetailView.as_view(), name="run-detail"),
    path("recipients/<segment:recipient_id>", views.RecipientView.as_view(),
         name="recipient-detail"),
    path("recipients/<segment:recipient_id>/channel-data/<str:channel>",
         views.ChannelDataView.as_view(), name="recipient-channel-data"),
    path("recipients/<segment:recipient_id>/preferences",
         preferences_api.RecipientPreferencesView.as_view(), name="recipient-preferences"),
    path("tenants/<str:key>", views.TenantView.as_view(), name="tenant-detail"),
    path("tenants/<str:key>/preferences", preferences_api.TenantPreferencesView.as_view(),
         name="tenant-preferences"),
    path("tenants/<str:key>/inbox-secret", TenantInboxSecretView.as_view(),
         name="tenant-inbox-secret"),
    path("topics/<str:key>", views.TopicView.as_view(), name="topic-detail"),
    path("topics/<str:key>/subscriptions", views.TopicSubscriptionsView.as_view(),
         name="topic-subscriptions"),
    path("providers/<str:key>", ProviderView.as_view(), name="provider-detail"),
    path("recipients/<segment:recipient_id>/inbox-token", InboxTokenView.as_view(),
         name="recipient-inbox-token"),
    path("inbox/", include("inbox.urls")),
    # Last: every other path answers the API's JSON 404.
    re_path(r"", views.UnknownEndpointView.as_view(), name="unknown-endpoint"),
]
