from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from inbox import views as inbox_views
from notifications.admin.find import find_view
from notifications.views import approval_page, slack_interactions

from . import metrics, views

urlpatterns = [
    path("admin/find/", admin.site.admin_view(find_view), name="admin-find"),
    # The admin's language menu posts here (django.views.i18n.set_language: a cookie).
    path("admin/i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("clarion.api_urls")),
    # Knock's and Novu's APIs, for their SDKs pointed at https://<clarion>/knock and …/novu.
    path("knock/", include("compat.knock.urls")),
    path("novu/", include("compat.novu.urls")),
    # Slack's interactivity requests (an approval's Approve / Reject buttons).
    path("webhooks/slack/<str:key>/interactions", slack_interactions,
         name="slack-interactions"),
    path("webhooks/", include("notifications.delivery.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("", views.home, name="home"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("healthz", views.health, name="health"),
    path("readyz", views.ready, name="ready"),
    path("metrics", metrics.metrics, name="metrics"),
    # The hosted preference center (/p/<token>/) and one-click unsubscribe (/u/<token>/).
    path("", include("preferences.urls")),
    # The page an approval email's Approve / Reject links open.
    path("approvals/<str:token>/", approval_page, name="approval-page"),
    path("demo/inbox/", inbox_views.demo_page, name="inbox-demo"),
    path("demo/inbox/trigger", inbox_views.demo_trigger, name="inbox-demo-trigger"),
]
