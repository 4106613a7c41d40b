"""The one error the store raises for a value the owner typed: it names the field."""

from __future__ import annotations

from typing import Any

from gateway.numbers import Reach
from gateway.screening.rules import InvalidField


class EntryError(InvalidField):
    """A list entry, rule or setting the owner typed is not usable; `field` names the input.

    `message` may be a template filled from `params` (see InvalidField), so the UI can show
    it in the reader's language.
    """

    def __init__(self, message: str, field: str = "pattern", /, **params: Any) -> None:
        super().__init__(field, message, **params)


class BroadEntry(EntryError):
    """An entry that covers a whole country or more than BROAD_NUMBERS numbers, not confirmed.

    Not a mistake in itself (``+44*`` may be meant), but a typo there blocks a country, so the
    owner confirms: the UI with a second step, the API with ``"confirm": true``, the CLI with
    ``--yes``, an import with its confirm option.
    """

    def __init__(self, message: str, reach: Reach, /, **params: Any) -> None:
        super().__init__(message, "pattern", **params)
        self.reach = reach


def entry_error(exc: ValueError, default_field: str) -> EntryError:
    """`exc` as an EntryError, keeping the field, template and parameters it already has."""
    if isinstance(exc, EntryError):
        return exc
    field = getattr(exc, "field", None) or default_field
    template = getattr(exc, "template", None)
    params = getattr(exc, "params", None) or {}
    if template is not None and params:
        return EntryError(template, field, **params)
    return EntryError(str(exc), field)
