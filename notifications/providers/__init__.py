"""Delivery providers: one small class per kind (Twilio, Slack, SendGrid…) on one base per channel.

base.py holds the contract (errors, OutboundMessage, SendResult, HTTPProvider), registry.py lists
the kinds, crypto.py encrypts ProviderConfig credentials, breaker.py is the circuit breaker and
selection.py picks a channel's providers in order. notifications/delivery.py orchestrates.
"""
