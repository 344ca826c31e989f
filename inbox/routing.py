"""Websocket routes of the inbox (mounted by clarion/asgi.py)."""

from django.urls import path

from .consumers import InboxConsumer

websocket_urlpatterns = [
    path("ws/inbox/", InboxConsumer.as_asgi()),
]
