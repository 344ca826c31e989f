"""Recipient preferences, the hosted preference center and one-click unsubscribe (to come)."""
