"""The in-app inbox: the InboxItem feed each recipient sees (REST, websocket and widget)."""
