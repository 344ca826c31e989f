from django.urls import path

from . import views

app_name = "preferences"
urlpatterns = [
    path("p/<str:token>/", views.center, name="center"),
    path("u/<str:token>/", views.unsubscribe, name="unsubscribe"),
]
