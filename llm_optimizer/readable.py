"""Floats as people read them: the Temporal UI shows payloads (activity results, a child's result, the markers of
local activities) as JSON, where a sum like 1858.42 prints as 1858.4199999999996.

`Tidy` is a float that serializes to JSON with 12 significant digits, far beyond what the estimates it carries can
tell apart, and drops the binary noise of the last ones. Python values are untouched.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import PlainSerializer

SIGNIFICANT_DIGITS = 12


def tidy(value: float) -> float:
    """`value` to `SIGNIFICANT_DIGITS` significant digits (inf and nan stay as they are)."""
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


Tidy = Annotated[float, PlainSerializer(tidy, return_type=float, when_used="json")]
