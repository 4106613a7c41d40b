"""Health endpoints for the web UI: `/healthz` (always on) and `/metrics` (opt-in).

Register with ``app.register_blueprint(health.bp, settings=settings)``; without the option the
blueprint looks for the `Settings` the app factory stored in ``app.config`` or
``app.extensions``. Both endpoints are GET-only and need no login, so a monitor (Uptime Kuma,
Prometheus, a systemd watchdog script) can poll them: the app's login guard must let the
``health.`` endpoints through. They read the database only and never touch the gateway.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, current_app, jsonify
from flask.blueprints import BlueprintSetupState

from gateway.config import Settings
from gateway.ops.health import (
    Metrics,
    collect_metrics,
    collect_status,
    prometheus_text,
    public_status,
    sqlite_file_missing,
)
from gateway.store.db import Database

bp = Blueprint("health", __name__)

_KEY = "ringfence_health"
# Endpoints a login guard (an app-wide before_request) must let through without a session.
PUBLIC_ENDPOINTS = frozenset({"health.healthz", "health.metrics"})
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@bp.record_once
def _remember_settings(state: BlueprintSetupState) -> None:
    settings = state.options.get("settings")
    state.app.extensions.setdefault(_KEY, {})
    if isinstance(settings, Settings):
        state.app.extensions[_KEY]["settings"] = settings


def _settings() -> Settings:
    own: dict[str, Any] = current_app.extensions.get(_KEY, {})
    found = own.get("settings")
    if isinstance(found, Settings):
        return found
    for value in (*current_app.config.values(), *current_app.extensions.values()):
        # The factory may store Settings itself, or an object holding it as `.settings`.
        for candidate in (value, getattr(value, "settings", None)):
            if isinstance(candidate, Settings):
                own["settings"] = candidate
                return candidate
    raise RuntimeError("health blueprint: register it with settings=<Settings>")


def _database(settings: Settings) -> Database | None:
    """One engine per app, made on first use; None while a SQLite file does not exist yet."""
    own: dict[str, Any] = current_app.extensions.setdefault(_KEY, {})
    db = own.get("db")
    if isinstance(db, Database):
        return db
    if sqlite_file_missing(settings.database_url) is not None:
        return None  # opening it would create an empty database
    db = Database(settings.database_url)
    own["db"] = db
    return db


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """Report health as JSON: 200 when all is well, 503 with the problems otherwise."""
    settings = _settings()
    status = collect_status(settings, _database(settings))
    response = jsonify(public_status(status))
    response.headers["Cache-Control"] = "no-store"
    return response, 200 if status["ok"] else 503


@bp.get("/metrics")
def metrics() -> Response:
    """Serve Prometheus metrics when `[web] metrics_enabled` is on; 404 otherwise."""
    settings = _settings()
    if not settings.web.metrics_enabled:
        abort(404)
    db = _database(settings)
    if db is None:
        body = prometheus_text(Metrics(database_up=False))
    else:
        body = prometheus_text(collect_metrics(settings, db))
    return Response(body, mimetype=None, content_type=PROMETHEUS_CONTENT_TYPE,
                    headers={"Cache-Control": "no-store"})
