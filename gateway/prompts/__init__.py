"""Voice prompts: their texts in French and English, and where to find their WAV files.

The WAVs are rendered by ``python -m gateway.prompts.generate`` (espeak-ng) into
``gateway/prompts/wav/<lang>/<name>.wav``; an owner can replace any of them with their own
recording (any PCM WAV, converted on the fly) in ``[gateway] prompts_dir`` or in
``<data_dir>/prompts``, using the same ``<lang>/<name>.wav`` layout.

Public API:
    LANGUAGES, PROMPT_NAMES, TONE_PROMPTS, SPOKEN_PROMPTS, TEXTS, PACKAGED_DIR, CHALLENGE_KEYS
    prompt_path(name, language, settings) -> Path
    challenge_prompt_name(key) -> str   "challenge_5", "challenge_star", "challenge_hash"...
        (``challenge`` itself asks for 5, the default key)
    keyed_prompt_name(base, key) -> str  the same for any prompt of KEYED_PROMPTS
        ("published_5": the burst profile "my number was published")
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config import Settings

__all__ = [
    "CHALLENGE_KEYS",
    "KEYED_PROMPTS",
    "LANGUAGES",
    "PACKAGED_DIR",
    "PROMPT_NAMES",
    "SPOKEN_PROMPTS",
    "TEXTS",
    "TONE_PROMPTS",
    "challenge_prompt_name",
    "keyed_prompt_name",
    "prompt_path",
]

LANGUAGES: tuple[str, ...] = ("fr", "en")
PACKAGED_DIR = Path(__file__).resolve().parent / "wav"
"""Where the generator writes by default, and the last place prompt_path() looks."""

# Kept short on purpose: a predictive dialer hands a call to an agent after a short "hello",
# and a long message reads as a machine; callers also hang up on long preambles.
TEXTS: dict[str, dict[str, str]] = {
    "greeting": {
        "fr": "Bonjour. Vous êtes sur la messagerie. "
        "Laissez votre nom, votre numéro et votre message après le bip.",
        "en": "Hello. You have reached the voicemail. "
        "Please leave your name, number and message after the tone.",
    },
    "challenge": {  # the default key; challenge_<key> below for the others
        "fr": "Bonjour. Pour être mis en relation, appuyez sur la touche 5.",
        "en": "Hello. To be put through, please press 5.",
    },
    "challenge_passed": {
        "fr": "Merci. Votre prochain appel sonnera directement. "
        "Vous pouvez aussi laisser un message après le bip.",
        "en": "Thank you. Your next call will ring through. "
        "You can also leave a message after the tone.",
    },
    "connecting": {
        "fr": "Merci. Je vous mets en relation.",
        "en": "Thank you. Connecting you now.",
    },
    "goodbye": {
        "fr": "Merci, au revoir.",
        "en": "Thank you, goodbye.",
    },
    "spoof_shield": {
        "fr": "Si vous rappelez suite à un appel manqué : nous ne vous avons pas appelé. "
        "Notre numéro a sans doute été usurpé par un centre d'appels. "
        "Pour laisser malgré tout un message, parlez après le bip.",
        "en": "If you are returning a missed call: we did not call you. "
        "Our number was probably spoofed by a call centre. "
        "To leave a message anyway, speak after the tone.",
    },
    "not_in_service": {
        "fr": "Le numéro que vous avez demandé n'est plus en service.",
        "en": "The number you have dialled is not in service.",
    },
    "closed": {
        "fr": "Nous ne prenons pas d'appels pour le moment. Merci de rappeler plus tard.",
        "en": "We are not taking calls at the moment. Please call back later.",
    },
    # Instead of the greeting when no message would fit (the cap or the disk): the caller must
    # not speak to a beep that keeps nothing.
    "voicemail_full": {
        "fr": "La messagerie est pleine et ne peut pas prendre de message. "
        "Merci de rappeler plus tard.",
        "en": "The mailbox is full and cannot take a message. Please call back later.",
    },
    # Burst profile "my number was published": new clients are welcome, robots are not. The
    # key is asked for as in the challenge (published_<key> below for the other keys).
    "published": {
        "fr": "Bonjour. Notre numéro vient d'être publié et nous recevons beaucoup d'appels. "
        "Si vous êtes client, appuyez sur la touche 5.",
        "en": "Hello. Our number has just been published and we are getting many calls. "
        "If you are a customer, please press 5.",
    },
}
"""Spoken prompts by name and language. ``not_in_service`` is rendered after the SIT tones."""

CHALLENGE_KEYS = "0123456789*#"
"""Keys the owner may choose for the challenge (the store's ``challenge_digit`` setting)."""
_KEY_SLUGS = {"*": "star", "#": "hash"}
_KEY_WORDS = {"fr": {"*": "étoile", "#": "dièse"}, "en": {"*": "star", "#": "hash"}}
# Prompts that ask for the owner's key, and their text with the key left open.
_KEYED_TEMPLATES = {
    "challenge": {
        "fr": "Bonjour. Pour être mis en relation, appuyez sur la touche {key}.",
        "en": "Hello. To be put through, please press {key}.",
    },
    "published": {
        "fr": "Bonjour. Notre numéro vient d'être publié et nous recevons beaucoup d'appels. "
        "Si vous êtes client, appuyez sur la touche {key}.",
        "en": "Hello. Our number has just been published and we are getting many calls. "
        "If you are a customer, please press {key}.",
    },
}
KEYED_PROMPTS: tuple[str, ...] = tuple(_KEYED_TEMPLATES)
"""Prompts played with the key the caller must press: one file per key (``challenge_5``)."""


def keyed_prompt_name(base: str, key: str) -> str:
    """Return the prompt `base` asking for `key`: ``published_5``, ``challenge_star``..."""
    if base not in _KEYED_TEMPLATES:
        raise ValueError(f"{base!r} does not ask for a key; those that do: {KEYED_PROMPTS}")
    if len(key) != 1 or key not in CHALLENGE_KEYS:
        raise ValueError(f"no {base} prompt for key {key!r}; allowed: {CHALLENGE_KEYS}")
    return f"{base}_{_KEY_SLUGS.get(key, key)}"


def challenge_prompt_name(key: str) -> str:
    """Return the prompt that asks for `key`: ``challenge_5``, ``challenge_star``..."""
    return keyed_prompt_name("challenge", key)


# One "press N" prompt per key, so changing the challenge digit in the UI needs no new file.
for _base, _templates in _KEYED_TEMPLATES.items():
    for _key in CHALLENGE_KEYS:
        TEXTS[keyed_prompt_name(_base, _key)] = {
            lang: template.format(key=_KEY_WORDS[lang].get(_key, _key))
            for lang, template in _templates.items()
        }
del _base, _templates, _key

TONE_PROMPTS: tuple[str, ...] = ("sit", "beep")
"""Prompts made of tones only, generated without espeak-ng (the same file in every language)."""
SPOKEN_PROMPTS: tuple[str, ...] = tuple(TEXTS)
PROMPT_NAMES: tuple[str, ...] = SPOKEN_PROMPTS + TONE_PROMPTS

_SAFE_NAME = re.compile(r"[a-z0-9_]{1,40}")
_SAFE_LANGUAGE = re.compile(r"[a-z]{2}")


def prompt_path(name: str, language: str, settings: Settings) -> Path:
    """Return the WAV to play for a prompt: owner's folder, then data folder, then packaged."""
    # Names become file names: refuse anything that could walk out of the folders.
    if not _SAFE_NAME.fullmatch(name):
        raise ValueError(f"invalid prompt name {name!r}")
    if not _SAFE_LANGUAGE.fullmatch(language):
        raise ValueError(f"invalid prompt language {language!r}")
    relative = Path(language) / f"{name}.wav"
    candidates: list[Path] = []
    if settings.gateway.prompts_dir is not None:
        candidates.append(settings.gateway.prompts_dir / relative)
    candidates.append(settings.data_dir / "prompts" / relative)
    candidates.append(PACKAGED_DIR / relative)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"prompt {name!r} ({language}) not found; looked in {looked}. "
        "Run `python -m gateway.prompts.generate` to render the packaged prompts."
    )
