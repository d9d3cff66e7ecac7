"""Quality evaluation: where quality scores come from when the application does not send one.

Evaluators share one interface (`base.Evaluator`): a request, a response, an optional reference and context in; a
score in 0..1 per dimension, an overall score, a confidence and the method out. They are registered by name
(`base.build`) and chosen per service in the `evaluation` settings.
"""

from llm_optimizer.evaluation import feedback, heuristics, reference  # noqa: F401  (register the built-ins)
from llm_optimizer.evaluation.base import Evaluation, EvaluationInput, Evaluator, build, names

__all__ = ["Evaluation", "EvaluationInput", "Evaluator", "build", "names"]
