"""Ringfence's SIP user agent."""
