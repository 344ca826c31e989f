"""Preferences: who wants what, where and when.

Owns the recipient's and the tenant's PreferenceSets (Knock's shape: channel types, categories,
workflows, plus quiet hours), workflow defaults, the one resolution function `allowed()`, the
hosted preference center (`/p/<token>/`) and RFC 8058 one-click unsubscribe (`/u/<token>/`).
"""
