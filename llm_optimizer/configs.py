"""Versioned LLM configurations of a service: immutable once registered."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from llm_optimizer.events import Name

Version = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


class GenerationParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: Annotated[float, Field(ge=0, le=2, allow_inf_nan=False)] = 0.7
    top_p: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 1.0
    top_k: Annotated[int, Field(gt=0)] | None = None
    max_tokens: Annotated[int, Field(gt=0, le=1_000_000)] = 1024
    stop_sequences: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=16
    )


class ConfigSpec(BaseModel):
    """What an application needs to make a call: the part of a config that a version freezes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Name
    provider: Name
    prompt_template: Annotated[str, StringConstraints(max_length=100_000)] | None = None
    params: GenerationParams = GenerationParams()
    extra: dict[str, Any] = Field(default_factory=dict, description="provider-specific options")

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
    created_by: Annotated[str, StringConstraints(min_length=1, max_length=128)] = "optimizer"
    description: Annotated[str, StringConstraints(max_length=2000)] = ""
