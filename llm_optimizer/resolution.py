"""Config resolution: which version (and variant) serves a request, sticky per request key.

A key hashes to a fixed bucket in [0, 100). The canary serves the buckets below its percentage, so growing the
percentage only adds keys: a key in the canary at 5% stays in it at 25%. The arms of an exploration (several
candidates measured at once, `llm_optimizer/exploration.py`) serve the consecutive ranges after the canary's.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llm_optimizer.configs import ConfigSpec
from llm_optimizer.events import Variant


class Assignment(BaseModel):
    """The live assignment of a service: its active version, at most one canary with a traffic share, and the arms
    of an exploration (version -> share), which are never the canary at the same time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    service: str
    active_version: str
    canary_version: str | None = None
    canary_percent: float = Field(default=0.0, ge=0, le=100)
    explore: dict[str, Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _share_needs_canary(self) -> Assignment:
        if self.canary_version is None and self.canary_percent != 0:
            raise ValueError(f"canary_percent = {self.canary_percent} but there is no canary_version")
        total = self.canary_percent + sum(self.explore.values())
        if total > 100 + 1e-9:
            raise ValueError(f"explore: canary and exploration shares add up to {total:g}% (at most 100)")
        for version in (self.active_version, self.canary_version):
            if version in self.explore:
                raise ValueError(f"explore: {version} is already the active or canary version")
        return self


class Resolution(BaseModel):
    model_config = ConfigDict(frozen=True)

    service: str
    version: str
    variant: Variant
    bucket: float


class ResolvedConfig(BaseModel):
    """The config that serves a request: its version, which side of a split it is, and its spec (what
    `GET /api/v1/config/{service}` answers; the client's own copy is `optimizer_client.wire.ResolvedConfig`, held
    to this one by tests/unit/test_client_wire.py)."""

    model_config = ConfigDict(frozen=True)

    service: str
    version: str
    variant: Variant
    spec: ConfigSpec


def bucket(service: str, key: str) -> float:
    """A stable position of `key` in [0, 100) for `service` (independent across services)."""
    digest = hashlib.sha256(f"{service}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def resolve(assignment: Assignment, key: str) -> Resolution:
    """The version that serves `key`.

    >>> a = Assignment(service="chat", active_version="v1", canary_version="v2", canary_percent=100)
    >>> resolve(a, "user-1").version
    'v2'
    """
    position = bucket(assignment.service, key)
    if assignment.canary_version is not None and position < assignment.canary_percent:
        return Resolution(
            service=assignment.service, version=assignment.canary_version, variant=Variant.canary, bucket=position
        )
    edge = assignment.canary_percent
    for version, share in sorted(assignment.explore.items()):
        edge += share
        if position < edge:
            return Resolution(service=assignment.service, version=version, variant=Variant.canary, bucket=position)
    return Resolution(
        service=assignment.service, version=assignment.active_version, variant=Variant.baseline, bucket=position
    )
