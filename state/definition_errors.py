"""What both definition parsers (segments and deliveries, journeys) share: the error that
carries every problem of a file with its path, and the rule for ids."""
from __future__ import annotations

from state.conditions import ID


class DefinitionError(ValueError):
    """Every problem of a definition file: `errors` is a list of (path, problem)."""

    def __init__(self, errors: list[tuple[str, str]]):
        super().__init__("\n".join(f"{path}: {problem}" for path, problem in errors))
        self.errors = list(errors)


def valid_id(value) -> bool:
    return isinstance(value, str) and ID.fullmatch(value) is not None


def bad_id(value) -> str:
    return f"{value!r} is not a valid id: 1 to 64 letters, digits, _ or -"
