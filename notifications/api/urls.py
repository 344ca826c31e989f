"""notifications' part of /api/v1/ (clarion/api_urls.py composes the apps' parts)."""

from django.urls import path

from ..providers.api import ProviderView
from . import approvals, messages, schedules, views

urlpatterns = [
    path("workflows", views.WorkflowListView.as_view(), name="workflow-list"),
    path("workflows/<str:key>", views.WorkflowDetailView.as_view(), name="workflow-detail"),
    path("workflows/<str:key>/trigger", views.TriggerView.as_view(), name="workflow-trigger"),
    path("workflows/<str:key>/trigger/bulk", views.BulkTriggerView.as_view(),
         name="workflow-trigger-bulk"),
    path("workflows/<str:key>/cancel", views.CancelView.as_view(), name="workflow-cancel"),
    path("triggers/<uuid:trigger_id>", views.TriggerDetailView.as_view(), name="trigger-detail"),
    path("approvals/<str:token>", approvals.ApprovalAnswerView.as_view(),
         name="approval-answer"),
    path("runs/<uuid:run_id>", views.RunDetailView.as_view(), name="run-detail"),
    path("messages", messages.MessageListView.as_view(), name="message-list"),
    path("messages/<uuid:message_id>", messages.MessageDetailView.as_view(),
         name="message-detail"),
    path("recipients/<segment:recipient_id>", views.RecipientView.as_view(),
         name="recipient-detail"),
    path("recipients/<segment:recipient_id>/channel-data/<str:channel>",
         views.ChannelDataView.as_view(), name="recipient-channel-data"),
    path("tenants/<str:key>", views.TenantView.as_view(), name="tenant-detail"),
    path("topics/<str:key>", views.TopicView.as_view(), name="topic-detail"),
    path("topics/<str:key>/subscriptions", views.TopicSubscriptionsView.as_view(),
         name="topic-subscriptions"),
    path("schedules/<str:key>", schedules.ScheduleView.as_view(), name="schedule-detail"),
    path("schedules/<str:key>/occurrences", schedules.ScheduleOccurrencesView.as_view(),
         name="schedule-occurrences"),
    path("providers/<str:key>", ProviderView.as_view(), name="provider-detail"),
]
