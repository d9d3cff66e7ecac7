"""Regular expressions given in settings and options: checked when they are read, with a readable error."""

from __future__ import annotations

import re


def checked_regex(value: str | None) -> str | None:
    """`value` if it compiles; a ValueError (which pydantic reports with the field and value) if not."""
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"{value!r} is not a regular expression ({exc})") from None
    return value
