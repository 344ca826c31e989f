"""`/api/v1/inbox/…`: the recipient's feed, counts, marks and preferences (recipient
authentication)."""

from django.urls import path, re_path

from . import api

urlpatterns = [
    path("", api.FeedView.as_view(), name="inbox-feed"),
    path("counts", api.CountsView.as_view(), name="inbox-counts"),
    re_path(r"^items/(?P<item_id>[0-9]+)/(?P<action>seen|read|unread|archived|unarchived|clicked)$",
            api.ItemActionView.as_view(), name="inbox-item-mark"),
    path("seen", api.BulkActionView.as_view(action_name="seen"), name="inbox-mark-all-seen"),
    path("read", api.BulkActionView.as_view(action_name="read"), name="inbox-mark-all-read"),
    path("archive-read", api.BulkActionView.as_view(action_name="archive_read"),
         name="inbox-archive-read"),
    path("preferences", api.InboxPreferencesView.as_view(), name="inbox-preferences"),
    path("preferences/center", api.InboxPreferenceCenterView.as_view(),
         name="inbox-preference-center"),
]
