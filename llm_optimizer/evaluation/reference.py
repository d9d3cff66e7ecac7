"""Reference-based evaluators: the response against a known good answer.

exact match (normalised), token F1 (SQuAD's definition), ROUGE-L (longest common subsequence F-measure), and the
cosine similarity of MiniLM sentence embeddings (`minilm.py`, a model shipped in a wheel; no download).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from llm_optimizer.errors import NotEvaluable
from llm_optimizer.evaluation.base import Evaluation, EvaluationInput, combine, register
from llm_optimizer.patterns import checked_regex

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalise(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def exact_match(response: str, reference: str) -> float:
    return float(normalise(response) == normalise(reference))


def token_f1(response: str, reference: str) -> float:
    predicted, gold = normalise(response).split(), normalise(reference).split()
    if not predicted or not gold:
        return float(predicted == gold)
    common = sum((Counter(predicted) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def rouge_l(response: str, reference: str) -> float:
    """ROUGE-L F1 over lower-cased word tokens."""
    a, b = response.lower().split(), reference.lower().split()
    if not a or not b:
        return float(a == b)
    lcs = _lcs_length(a, b)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 2 * precision * recall / (precision + recall)


def _lcs_length(a: list[str], b: list[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


Metric = Literal["exact_match", "token_f1", "rouge_l", "embedding"]
DEFAULT_METRICS: tuple[Metric, ...] = ("exact_match", "token_f1", "rouge_l")


class ReferenceOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metrics: list[Metric] = Field(default_factory=lambda: list(DEFAULT_METRICS), min_length=1)
    weights: dict[str, float] = Field(default_factory=dict)
    # Compare only the last match of this regular expression in the response (its first group if it has one),
    # e.g. r"-?\d+(?:\.\d+)?" for the final number of a worked maths answer.
    extract: Annotated[str | None, AfterValidator(checked_regex)] = None


@register("reference", ReferenceOptions)
class ReferenceBased:
    name = "reference"

    def __init__(self, options: ReferenceOptions):
        self.options = options
        self._extract = re.compile(options.extract) if options.extract else None

    def evaluate(self, item: EvaluationInput) -> Evaluation:
        if item.reference is None:
            raise NotEvaluable("no reference answer")
        response = self._answer(item.response)
        scores: dict[str, float] = {}
        for metric in self.options.metrics:
            if metric == "embedding":
                from llm_optimizer.evaluation.minilm import similarity  # loads the model on first use

                scores[metric] = max(0.0, similarity(response, item.reference))
            else:
                scores[metric] = _METRICS[metric](response, item.reference)
        return Evaluation(overall=combine(scores, self.options.weights), dimensions=scores, method="reference")

    def _answer(self, response: str) -> str:
        if self._extract is None:
            return response
        matches = list(self._extract.finditer(response))
        if not matches:
            return ""
        last = matches[-1]
        return last.group(1) if last.groups() else last.group(0)


_METRICS = {"exact_match": exact_match, "token_f1": token_f1, "rouge_l": rouge_l}
