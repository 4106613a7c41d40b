"""Notifications: the daily digest, instant alerts, and the channels that carry them."""
