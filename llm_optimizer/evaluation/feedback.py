"""User feedback as quality: explicit ratings and thumbs, and implicit signals carried by the event.

Signals (in `EvaluationInput.signals`): `rating` (1..`scale`), `thumbs` (up/down or true/false),
`user_feedback` (-1..1, the event field), `retried` (the user asked again: a bad sign), `correction` (the text
the user changed the response into: the less they changed, the better the response was).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from llm_optimizer.errors import NotEvaluable
from llm_optimizer.evaluation.base import Evaluation, EvaluationInput, register


def rating_score(rating: float, scale: int = 5) -> float:
    """1..scale onto 0..1."""
    if not 1 <= rating <= scale:
        raise NotEvaluable(f"rating = {rating!r}: outside 1..{scale}")
    return (rating - 1) / (scale - 1)


def thumbs_score(thumbs: bool | str) -> float:
    if isinstance(thumbs, str):
        if thumbs.lower() not in ("up", "down"):
            raise NotEvaluable(f"thumbs = {thumbs!r}: expected up or down")
        return float(thumbs.lower() == "up")
    return float(bool(thumbs))


def edit_similarity(original: str, corrected: str) -> float:
    """1 - Levenshtein distance / the longer length, over characters."""
    if not original and not corrected:
        return 1.0
    return 1 - levenshtein(original, corrected) / max(len(original), len(corrected))


def levenshtein(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


class FeedbackOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rating_scale: int = Field(default=5, ge=2)
    retry_score: float = Field(default=0.2, ge=0, le=1)  # a retried answer is mostly a failed one


@register("feedback", FeedbackOptions)
class Feedback:
    name = "feedback"

    def __init__(self, options: FeedbackOptions):
        self.options = options

    def evaluate(self, item: EvaluationInput) -> Evaluation:
        s = item.signals
        scores: dict[str, float] = {}
        if s.get("rating") is not None:
            scores["rating"] = rating_score(float(s["rating"]), self.options.rating_scale)
        if s.get("thumbs") is not None:
            scores["thumbs"] = thumbs_score(s["thumbs"])
        if s.get("user_feedback") is not None:
            scores["user_feedback"] = (float(s["user_feedback"]) + 1) / 2
        if s.get("correction") is not None:
            scores["correction"] = edit_similarity(item.response, str(s["correction"]))
        if s.get("retried"):
            scores["retried"] = self.options.retry_score
        if not scores:
            raise NotEvaluable("no feedback signal on the event")
        explicit = [scores[k] for k in ("rating", "thumbs", "user_feedback") if k in scores]
        # Explicit feedback outranks what is inferred: implicit signals only decide when there is nothing else.
        overall = sum(explicit) / len(explicit) if explicit else sum(scores.values()) / len(scores)
        return Evaluation(overall=overall, dimensions=scores, confidence=0.9 if explicit else 0.5, method="feedback")
