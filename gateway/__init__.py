"""Ringfence: a call-screening gateway for a home VoIP line."""

__version__ = "0.1.0"
