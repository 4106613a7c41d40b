"""French and English for the UI: English text is the key, French comes from a dict.

Small on purpose: one owner, two languages, no build step. A missing French string falls back
to English, and `tests/unit/test_web_i18n.py` checks that every string used has a translation.
"""

from __future__ import annotations

from typing import Any

LANGUAGES = ("fr", "en")

from web.i18n_fr import FR  # noqa: E402 - the table is long; it lives in its own module

# Machine names (rule kinds, setting fields, prompt names) shown as labels get English words
# too; everything else is already English.
EN: dict[str, str] = {
    "number_type": "number type", "country": "countries", "telemarketing": "telemarketing",
    "verstat_failed": "failed STIR/SHAKEN", "quiet_hours": "quiet hours",
    "withheld": "withheld number", "invalid": "invalid number",
    "types": "number types", "regions": "countries", "mode": "mode",
    "allow_only": "only these countries ring", "block": "block these countries",
    "outside_hours_only": "only outside legal calling hours", "start": "from", "end": "until",
    "days": "days", "max_calls": "calls at most", "window_minutes": "within (minutes)",
    "distinct_callers": "different unknown callers", "duration_minutes": "lasts (minutes)",
    "min_minutes": "a retry after at least (minutes)", "action": "then",
    "mode pass": "ring (no screening)", "mode greylist": "greylist (ring when they call back)",
    "mode challenge": "challenge (press a key)", "mode voicemail": "voicemail",
    "exact": "exact number", "glob": "pattern", "regex": "regular expression",
    "manual": "added by hand", "auto": "passed the challenge", "known": "answered by you",
    "greeting": "greeting", "challenge_passed": "challenge passed",
    "spoof_shield": "spoof shield (we did not call you)", "not_in_service": "not in service",
    "closed": "closed", "goodbye": "goodbye", "connecting": "connecting you (after a challenge)",
}


def translate(message: str, lang: str, /, **values: Any) -> str:
    """Translate `message` into `lang` and fill in `{name}` placeholders from `values`."""
    template = FR.get(message, message) if lang == "fr" else EN.get(message, message)
    return template.format(**values) if values else template
