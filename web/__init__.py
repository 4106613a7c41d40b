"""The owner's web UI: a Flask app factory, one blueprint per page group.

The UI is its own process (served by waitress) and shares the database with the gateway; it
only makes short transactions so it can never hold up call handling.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.exceptions import HTTPException

from gateway.call.screen import Screener
from gateway.config import Settings
from gateway.store import Store, open_store
from web import (
    api,
    auth,
    calls,
    dashboard,
    health,
    lists,
    notifications,
    rules,
    screen,
    transfer,
    voicemail,
)
from web.helpers import _, install_template_helpers
from web.security import LoginThrottle, load_secret_key, read_api_token_file
from web.state import WebState, state

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 64 * 1024 * 1024  # a million-line CSV is about 30 MB


class _SessionInterface(SecureCookieSessionInterface):
    """Signed-cookie sessions whose cookie is Secure whenever the request came over https."""

    def get_cookie_secure(self, app: Flask) -> bool:
        """Mark the cookie Secure on https (a LAN UI is often plain http)."""
        return bool(request.is_secure) or bool(app.config.get("SESSION_COOKIE_SECURE"))


def _security_headers(response: Response) -> Response:
    # No inline script or style anywhere, so the strictest CSP costs nothing.
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    if request.endpoint != "static":  # pages show private data: keep them out of caches
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _http_error(exc: HTTPException) -> tuple[Response | str, int]:
    """404, 405 and the like: JSON under /api/, else a page with the UI's look and menu."""
    code = exc.code or 500
    if request.path.startswith("/api/"):
        # Unknown API routes (no blueprint matched) still answer in JSON, like the API itself.
        return jsonify({"error": exc.description or exc.name}), code
    titles = {404: _("Page not found"), 405: _("Not allowed here")}
    messages = {404: _("There is nothing at this address (or no longer). The menu above "
                       "leads to every page."),
                405: _("This page cannot be used that way. Go back and use its buttons.")}
    return render_template("error.html", title=titles.get(code, exc.name),
                           message=messages.get(code, exc.description or exc.name),
                           code=code), code


def _server_error(exc: Exception) -> tuple[Response | str, int]:
    """An unexpected error: logged with its traceback, shown as a page in the owner's words.

    If even the page cannot be drawn (the database is gone), a bare sentence still answers.
    """
    original = getattr(exc, "original_exception", None) or exc
    log.error("error while serving %s %s", request.method, request.path,
              exc_info=(type(original), original, original.__traceback__))
    if request.path.startswith("/api/"):
        return jsonify({"error": "internal error: see the web UI's log"}), 500
    try:
        return render_template(
            "error.html", title=_("Something went wrong"), code=500,
            message=_("Ringfence could not show this page. The error is in the web UI's log "
                      "(journalctl -u ringfence-web). Calls are not affected: the gateway runs "
                      "on its own.")), 500
    except Exception:
        log.exception("could not draw the error page either")
        return Response("Ringfence: internal error (see the web UI's log).",
                        mimetype="text/plain"), 500


def create_app(settings: Settings, store: Store | None = None,
               *, test_config: dict[str, Any] | None = None) -> Flask:
    """Create the web UI for `settings`, opening the database unless `store` is given."""
    if store is None:
        # The gateway (or `ringfence db upgrade`) owns migrations; the UI only checks the schema.
        store = open_store(settings, upgrade=False)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=load_secret_key(settings),
        SESSION_COOKIE_NAME="ringfence_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(days=14),
        MAX_CONTENT_LENGTH=MAX_UPLOAD_BYTES,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep fields in a readable order
    if test_config:
        app.config.update(test_config)
    app.session_interface = _SessionInterface()
    app.extensions["ringfence"] = WebState(
        settings=settings, store=store, screener=Screener(store, settings),
        throttle=LoginThrottle(),
        api_file_hash=read_api_token_file(settings.web.api_token_file),
    )

    install_template_helpers(app)
    app.jinja_env.globals["action_choices"] = rules.action_choices
    app.before_request(auth.gate)
    app.after_request(_security_headers)
    for code in (404, 405):
        app.register_error_handler(code, _http_error)
    app.register_error_handler(500, _server_error)
    for module in (auth, dashboard, calls, lists, rules, screen, voicemail, transfer,
                   notifications):
        app.register_blueprint(module.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(health.bp, settings=settings)
    # Probes and scrapers carry no session: the health blueprint answers without login.
    app.config["RINGFENCE_PUBLIC_BLUEPRINTS"] = {health.bp.name}
    return app


__all__ = ["WebState", "create_app", "state"]
