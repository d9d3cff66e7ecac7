"""The evaluator interface and the registry of evaluators by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llm_optimizer.errors import NotEvaluable, ValidationFailed
from llm_optimizer.events import describe_validation_error


class EvaluationInput(BaseModel):
    model_config = ConfigDict(frozen=True)

    request: str = ""
    response: str
    reference: str | None = None
    context: str | None = None
    signals: dict[str, Any] = Field(default_factory=dict)  # feedback carried by the event (see feedback.py)


class Evaluation(BaseModel):
    model_config = ConfigDict(frozen=True)

    overall: float = Field(ge=0, le=1)
    dimensions: dict[str, float] = Field(default_factory=dict)
    confidence: float = Field(default=1.0, ge=0, le=1)
    method: str
    cost_usd: float = 0.0  # what the evaluation itself cost (an LLM judge's tokens)


class Evaluator(Protocol):
    name: str

    def evaluate(self, item: EvaluationInput) -> Evaluation: ...


_REGISTRY: dict[str, tuple[type[BaseModel], Callable[[Any], Evaluator]]] = {}


def register(name: str, options: type[BaseModel]):
    """Class decorator: `build(name, {...})` validates the options with `options` and constructs the class."""

    def wrap(cls):
        _REGISTRY[name] = (options, cls)
        cls.name = name
        return cls

    return wrap


def build(name: str, options: dict[str, Any] | None = None) -> Evaluator:
    if name not in _REGISTRY:
        raise ValidationFailed(
            f"evaluator = {name!r}: not one of {', '.join(sorted(_REGISTRY))}", field="evaluator", value=name
        )
    model, cls = _REGISTRY[name]
    try:
        return cls(model.model_validate(options or {}))
    except ValidationError as exc:
        raise ValidationFailed(describe_validation_error(exc, prefix=f"{name}.")) from None


def names() -> list[str]:
    return sorted(_REGISTRY)


def combine(dimensions: dict[str, float], weights: dict[str, float] | None = None) -> float:
    """The weighted mean of the dimension scores (equal weights unless given)."""
    if not dimensions:
        raise NotEvaluable("no dimension could be scored")
    weights = weights or {}
    total = sum(weights.get(k, 1.0) for k in dimensions)
    return sum(v * weights.get(k, 1.0) for k, v in dimensions.items()) / total
