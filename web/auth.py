"""First-run setup, login, logout, language, account (password and API token)."""

from __future__ import annotations

import math
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from web.helpers import _, csrf_token, local_url
from web.i18n import LANGUAGES
from web.security import (
    LANGUAGE_KEY,
    PasswordError,
    api_token_is_set,
    auth_epoch,
    check_password,
    csrf_matches,
    new_api_token,
    password_is_set,
    revoke_api_token,
    set_password,
)
from web.state import state

bp = Blueprint("auth", __name__)

# Pages reachable without a session: before setup only these, after it login and language.
_OPEN_BEFORE_SETUP = {"auth.setup", "auth.language", "static"}
_OPEN_AFTER_SETUP = {"auth.login", "auth.language", "static"}


def _csrf_failure() -> BaseResponse:
    message = _("This form expired or did not come from this page (missing or wrong CSRF "
                "token). Go back, reload the page and try again.")
    return Response(render_template("error.html", title=_("Form rejected"), message=message),
                    status=400)


def gate() -> BaseResponse | None:
    """Send every request without a valid session to setup or login; check CSRF on POST."""
    public = current_app.config.get("RINGFENCE_PUBLIC_BLUEPRINTS", set())
    if request.path.startswith("/api/") or request.blueprint in public:
        return None  # the API checks its bearer token itself; health probes are public
    if request.method == "POST" and not csrf_matches(session.get("csrf"),
                                                     request.form.get("csrf_token")):
        return _csrf_failure()
    store = state().store
    endpoint = request.endpoint or ""
    if not password_is_set(store):
        session.pop("auth", None)
        if endpoint in _OPEN_BEFORE_SETUP:
            return None
        return redirect(url_for("auth.setup"))
    if endpoint in _OPEN_AFTER_SETUP:
        return None
    if endpoint == "auth.setup":
        return redirect(url_for("dashboard.index"))
    if (not session.get("auth") or session.get("auth") != auth_epoch(store)
            or not store.web_sessions.check(session.get("sid"),
                                            current_app.permanent_session_lifetime)):
        # The cookie is signed, but only the server's row makes it a session: after a logout
        # (or a new password) a copy of the cookie opens nothing.
        session.pop("auth", None)
        session.pop("sid", None)
        target = request.full_path if request.method == "GET" else None
        return redirect(url_for("auth.login", next=target))
    return None


def _safe_next(target: str | None) -> str:
    """Only follow a `next` that stays on this site (no open redirect)."""
    if target and urlsplit(target).scheme == "" and urlsplit(target).netloc == "":
        return local_url(target, url_for("dashboard.index"))
    return url_for("dashboard.index")


def _log_in() -> None:
    store = state().store
    lang = session.get("lang")  # a language picked on the login page survives logging in
    store.web_sessions.end(session.get("sid"))  # logging in again replaces the old session
    session.clear()
    if lang in LANGUAGES:
        session["lang"] = lang
    session.permanent = True
    session["auth"] = auth_epoch(store)
    session["sid"] = store.web_sessions.create(current_app.permanent_session_lifetime)
    csrf_token()  # a fresh token for the new session


@bp.route("/setup", methods=["GET", "POST"])
def setup() -> BaseResponse | tuple[str, int]:
    """Choose the owner's password on first run (there is no default)."""
    error = None
    if request.method == "POST":
        try:
            set_password(state().store, request.form.get("password", ""),
                         request.form.get("confirm", ""))
        except PasswordError as exc:
            error = _(str(exc))
        else:
            _log_in()
            flash(_("Password set. Welcome to Ringfence."))
            return redirect(url_for("dashboard.index"))
    return render_template("setup.html", error=error), 400 if error else 200


@bp.route("/login", methods=["GET", "POST"])
def login() -> BaseResponse | tuple[str, int] | str:
    """Log the owner in, throttling repeated failures per address and overall."""
    throttle = state().throttle
    ip = request.remote_addr or "?"
    error = None
    status = 200
    if request.method == "POST":
        wait = throttle.wait_seconds(ip)
        if wait > 0:
            error = _("Too many failed logins. Try again in {seconds} seconds.",
                      seconds=math.ceil(wait))
            status = 429
        elif check_password(state().store, request.form.get("password", "")):
            throttle.success(ip)
            _log_in()
            return redirect(_safe_next(request.args.get("next")))
        else:
            throttle.failure(ip)
            wait = throttle.wait_seconds(ip)
            error = _("Wrong password.")
            if wait > 0:
                error += " " + _("Too many failed logins. Try again in {seconds} seconds.",
                                 seconds=math.ceil(wait))
            status = 401
    return render_template("login.html", error=error), status


@bp.route("/logout", methods=["POST"])
def logout() -> BaseResponse:
    """End the session on the server too, so a copy of the cookie is worthless."""
    state().store.web_sessions.end(session.get("sid"))
    session.clear()
    return redirect(url_for("auth.login"))


@bp.route("/language", methods=["POST"])
def language() -> BaseResponse:
    """Switch the session's language."""
    lang = request.form.get("lang", "")
    if lang not in LANGUAGES:
        abort(400)
    session["lang"] = lang
    if session.get("auth"):  # only the owner's choice becomes the default for new sessions
        state().store.runtime.set_private(LANGUAGE_KEY, lang)
    return redirect(_safe_next(request.form.get("next")))


@bp.route("/account", methods=["GET"])
def account() -> str:
    """Show the password form and the API token state."""
    return render_template("account.html", errors={}, token=None,
                           token_set=api_token_is_set(state().store))


@bp.route("/account/password", methods=["POST"])
def change_password() -> BaseResponse | tuple[str, int]:
    """Change the password after checking the current one; other sessions are logged out."""
    store = state().store
    errors: dict[str, str] = {}
    if not check_password(store, request.form.get("current", "")):
        errors["current"] = _("The current password is wrong.")
    else:
        try:
            set_password(store, request.form.get("password", ""), request.form.get("confirm", ""))
        except PasswordError as exc:
            errors["password"] = _(str(exc))
    if errors:
        return render_template("account.html", errors=errors, token=None,
                               token_set=api_token_is_set(store)), 400
    _log_in()
    flash(_("Password changed. Other sessions are logged out."))
    return redirect(url_for("auth.account"))


@bp.route("/account/token", methods=["POST"])
def api_token() -> str:
    """Create (or replace) the API token and show it once."""
    store = state().store
    if request.form.get("revoke"):
        revoke_api_token(store)
        return render_template("account.html", errors={}, token=None, token_set=False)
    token = new_api_token(store)
    return render_template("account.html", errors={}, token=token, token_set=True)
