"""Heuristic evaluators: cheap, deterministic checks of a response's form.

Each configured check is a dimension scored 1 (passes) or 0 (fails), except length, which falls off linearly
outside its bounds. The overall score is their mean.
"""

from __future__ import annotations

import json
import re
from typing import Annotated

import jsonschema
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from llm_optimizer.evaluation.base import Evaluation, EvaluationInput, combine, register
from llm_optimizer.patterns import checked_regex

# Openings of answers that decline the task (checked case-insensitively at the start of a sentence).
REFUSAL_PATTERNS = (
    r"i(?:'m| am) (?:sorry|afraid)[^.]{0,40}\b(?:can(?:no|')t|unable|not able)",
    r"i can(?:no|')t (?:help|assist|comply|provide|do that)",
    r"i(?:'m| am) (?:unable|not able) to",
    r"as an ai(?: language model)?,? i",
    r"i won't (?:be able to )?(?:help|assist)",
)
_REFUSAL = re.compile(r"(?:^|[.!?]\s+)(?:" + "|".join(REFUSAL_PATTERNS) + ")", re.IGNORECASE)


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.search(text.strip()))


class HeuristicOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_chars: int = Field(default=1, ge=0)
    max_chars: int | None = Field(default=None, gt=0)
    json_format: bool = False
    json_schema: dict | None = None
    regex: Annotated[str | None, AfterValidator(checked_regex)] = None  # the response must match (re.search)
    required_keywords: list[str] = Field(default_factory=list)
    forbidden_keywords: list[str] = Field(default_factory=list)
    detect_refusal: bool = True

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, value: dict | None) -> dict | None:
        if value is not None:
            try:
                jsonschema.Draft202012Validator.check_schema(value)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"not a JSON schema ({exc.message})") from None
        return value


@register("heuristics", HeuristicOptions)
class Heuristics:
    name = "heuristics"

    def __init__(self, options: HeuristicOptions):
        self.options = options
        self._regex = re.compile(options.regex) if options.regex else None

    def evaluate(self, item: EvaluationInput) -> Evaluation:
        o, text = self.options, item.response
        scores = {"length": _length_score(len(text), o.min_chars, o.max_chars)}
        if o.json_format or o.json_schema is not None:
            scores["format"] = _json_score(text, o.json_schema)
        if self._regex is not None:
            scores["pattern"] = float(self._regex.search(text) is not None)
        lowered = text.lower()
        if o.required_keywords:
            scores["required_keywords"] = sum(k.lower() in lowered for k in o.required_keywords) / len(
                o.required_keywords
            )
        if o.forbidden_keywords:
            scores["forbidden_keywords"] = float(not any(k.lower() in lowered for k in o.forbidden_keywords))
        if o.detect_refusal:
            scores["not_refused"] = float(not is_refusal(text))
        overall = combine(scores)
        if scores.get("not_refused") == 0.0:
            overall = 0.0  # a refusal fails the task whatever its form
        return Evaluation(overall=overall, dimensions=scores, confidence=0.6, method="heuristics")


def _length_score(n: int, low: int, high: int | None) -> float:
    if n < low:
        return n / low if low else 0.0
    if high is not None and n > high:
        return max(0.0, 1 - (n - high) / high)
    return 1.0


def _json_score(text: str, schema: dict | None) -> float:
    try:
        document = json.loads(text)
    except ValueError:
        return 0.0
    if schema is None:
        return 1.0
    return float(jsonschema.Draft202012Validator(schema).is_valid(document))
