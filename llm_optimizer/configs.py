"""Versioned LLM configurations of a service: immutable once registered.

Whatever a spec holds must be storable as Postgres JSONB and bounded (see "Limits and refusals" in docs/api.md):
no NUL character in any string or key, no NaN or infinity, `extra` at most `MAX_EXTRA_BYTES` as JSON and
`MAX_EXTRA_DEPTH` levels deep, so that a whole spec stays under `MAX_SPEC_BYTES`.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from llm_optimizer.events import Name

Version = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]

MAX_PROMPT_CHARS = 100_000
MAX_EXTRA_BYTES = 64 * 1024
MAX_EXTRA_DEPTH = 32
# The largest spec the limits above allow, as Postgres prints JSONB (a prompt of 4-byte characters, a full `extra`
# with the spaces JSONB adds, the rest), with room: an export refuses a stored spec larger than this.
MAX_SPEC_BYTES = 4 * MAX_PROMPT_CHARS + 2 * MAX_EXTRA_BYTES + 16 * 1024


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("contains a NUL character, which Postgres cannot store")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]


CreatedBy = Annotated[Text, StringConstraints(min_length=1, max_length=128)]
Description = Annotated[Text, StringConstraints(max_length=2000)]


class GenerationParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: Annotated[float, Field(ge=0, le=2, allow_inf_nan=False)] = 0.7
    top_p: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 1.0
    top_k: Annotated[int, Field(gt=0)] | None = None
    max_tokens: Annotated[int, Field(gt=0, le=1_000_000)] = 1024
    stop_sequences: list[Annotated[Text, StringConstraints(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=16
    )


class ConfigSpec(BaseModel):
    """What an application needs to make a call: the part of a config that a version freezes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Name
    provider: Name
    prompt_template: Annotated[Text, StringConstraints(max_length=MAX_PROMPT_CHARS)] | None = None
    params: GenerationParams = GenerationParams()
    extra: dict[str, Any] = Field(default_factory=dict, description="provider-specific options")

    @field_validator("extra")
    @classmethod
    def _storable_extra(cls, extra: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if info.context and info.context.get("stored"):
            return extra  # read back from Postgres: it was stored, maybe before these limits; it stays readable
        problem = _unstorable(extra, "extra", 0)
        if problem:
            raise ValueError(problem)
        size = len(json.dumps(extra, separators=(",", ":"), ensure_ascii=False, default=_json_default).encode())
        if size > MAX_EXTRA_BYTES:
            raise ValueError(f"extra is {size} bytes as JSON, more than the limit of {MAX_EXTRA_BYTES}")
        return extra

    def fingerprint(self) -> str:
        """A stable hash of the content: registering the same spec twice yields the same version."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class ConfigVersion(BaseModel):
    """A registered, immutable version of a service's config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service: Name
    version: Version
    parent_version: Version | None = None
    spec: ConfigSpec
    created_at: AwareDatetime
    created_by: CreatedBy = "optimizer"
    description: Description = ""


def _json_default(value: Any) -> str:
    if isinstance(value, date):  # YAML reads an unquoted date or time as one; the JSON of the spec holds its text
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _unstorable(value: Any, path: str, depth: int) -> str | None:
    """`path = value: why` for the first value of `extra` that JSONB cannot hold or that the limits refuse."""
    if depth > MAX_EXTRA_DEPTH:
        return f"{path}: nested more than {MAX_EXTRA_DEPTH} levels deep"
    if isinstance(value, str):
        return f"{path} = {_show(value)}: contains a NUL character" if "\x00" in value else None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path} = {value!r}: not a finite number"
    if value is None or isinstance(value, bool | int | date):
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path}: key {_show(key)} is not a string"
            if "\x00" in key:
                return f"{path}: key {_show(key)} contains a NUL character"
            if problem := _unstorable(item, f"{path}.{key}", depth + 1):
                return problem
        return None
    if isinstance(value, list):
        for index, item in enumerate(value):
            if problem := _unstorable(item, f"{path}[{index}]", depth + 1):
                return problem
        return None
    return f"{path} = {_show(value)}: a {type(value).__name__} is not JSON"


def _show(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


class ExportedVersion(BaseModel):
    """One version of a config export (`GET /api/v1/config/export`), as an import reads it back."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Version | None = None  # None: numbered like a new registration
    parent_version: Version | None = None
    created_by: CreatedBy | None = None  # None: the importer
    description: Description = ""
    spec: ConfigSpec


class ServiceExport(BaseModel):
    """One service's document of a config export: its versions (parents first or not) and its active version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service: Name
    exported_at: datetime | str | None = None  # when the export was made: informational, not imported
    active_version: Version | None = None
    versions: list[ExportedVersion]
