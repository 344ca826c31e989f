"""/novu/: Novu's API paths (the `novu-py` SDK's server_url is https://<clarion>/novu)."""

from django.urls import path, re_path

from . import views

urlpatterns = [
    path("v1/events/trigger", views.TriggerView.as_view(), name="novu-trigger"),
    path("v1/events/trigger/bulk", views.BulkTriggerView.as_view(), name="novu-trigger-bulk"),
    path("v1/events/trigger/<segment:transaction_id>", views.CancelView.as_view(),
         name="novu-cancel"),
    path("v2/subscribers", views.SubscribersView.as_view(), name="novu-subscribers"),
    path("v2/subscribers/<segment:subscriber_id>", views.SubscriberView.as_view(),
         name="novu-subscriber"),
    path("v2/subscribers/<segment:subscriber_id>/preferences",
         views.SubscriberPreferencesView.as_view(), name="novu-subscriber-preferences"),
    path("v2/topics", views.TopicsView.as_view(), name="novu-topics"),
    path("v2/topics/<str:key>", views.TopicView.as_view(), name="novu-topic"),
    path("v2/topics/<str:key>/subscriptions", views.TopicSubscriptionsView.as_view(),
         name="novu-topic-subscriptions"),
    re_path(r"", views.UnknownEndpointView.as_view(), name="novu-unknown-endpoint"),
]
