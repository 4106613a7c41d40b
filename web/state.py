"""What every view shares, kept on the Flask app: settings, store, screener and throttle."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from gateway.call.screen import Screener
from gateway.config import Settings
from gateway.store import Store
from web.security import LoginThrottle


@dataclass
class WebState:
    """What the views share: settings, the store, the screener and the login throttle."""

    settings: Settings
    store: Store
    screener: Screener
    throttle: LoginThrottle
    api_file_hash: str | None = None


def state() -> WebState:
    """The current app's shared state."""
    value: WebState = current_app.extensions["ringfence"]
    return value
