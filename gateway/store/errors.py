"""The one error the store raises for a value the owner typed: it names the field."""

from __future__ import annotations

from gateway.screening.rules import InvalidField


class EntryError(InvalidField):
    """A list entry, rule or setting the owner typed is not usable; `field` names the input."""

    def __init__(self, message: str, field: str = "pattern") -> None:
        super().__init__(field, message)


def entry_error(exc: ValueError, default_field: str) -> EntryError:
    """`exc` as an EntryError, keeping the field a InvalidField already names."""
    return EntryError(str(exc), getattr(exc, "field", None) or default_field)
