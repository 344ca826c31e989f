"""/knock/: Knock's API paths (the `knockapi` SDK's base_url is https://<clarion>/knock)."""

from django.urls import path, re_path

from . import views

urlpatterns = [
    path("v1/workflows/<str:key>/trigger", views.TriggerView.as_view(), name="knock-trigger"),
    path("v1/workflows/<str:key>/cancel", views.CancelView.as_view(), name="knock-cancel"),
    path("v1/users/<segment:user_id>", views.UserView.as_view(), name="knock-user"),
    path("v1/users/<segment:user_id>/preferences/<str:set_id>",
         views.PreferenceSetView.as_view(), name="knock-user-preferences"),
    path("v1/objects/<str:collection>/<segment:object_id>", views.ObjectView.as_view(),
         name="knock-object"),
    path("v1/objects/<str:collection>/<segment:object_id>/subscriptions",
         views.ObjectSubscriptionsView.as_view(), name="knock-object-subscriptions"),
    re_path(r"", views.UnknownEndpointView.as_view(), name="knock-unknown-endpoint"),
]
