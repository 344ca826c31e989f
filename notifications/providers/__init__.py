"""Delivery providers: adapters only, one small class per kind (Twilio, Slack, SendGrid…) on one
base per channel. They never import notifications.delivery, services, engine or tasks.

base.py holds the sending contract (errors, OutboundMessage, SendResult, HTTPProvider) and
callbacks.py the status callback contract (StatusEvent, StatusCallbackView); registry.py lists
the kinds, crypto.py encrypts ProviderConfig credentials, breaker.py is the circuit breaker.
Each kind's module holds everything about that provider — sending, and its callbacks'
signatures and event map: email.py (SMTP and anymail's ESPs; SMTP's DATA gated at its end in
smtp_data.py, its connections kept open across emails in smtp_sessions.py, anymail's tracking
views in anymail_tracking.py), twilio.py, vonage.py, plivo.py
(on sms.py; sms_segments.py counts what an SMS costs), fcm.py, apns.py, webpush.py (on
push.py), chat.py, webhook.py. notifications/delivery/ orchestrates
and applies the status events.
"""
