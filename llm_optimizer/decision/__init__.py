"""The decision: from what is known of the live config and its candidates to one explained, safe `Decision`.

- `models`: what a decision reads and says (Profile, Constraints, Guards, Memory, Decision, Check, CandidateFate...);
- `pipeline`: `decide`, the decision flow (safety, guards, the measured candidates, then an exploration);
- `governance`: the hard limits and policies, and what a governance service's verdict does to a decision;
- `estimates`: what a candidate's measurements say with their uncertainty (confidence, risk, expected impact).
The objectives (`Objectives`, `weighted_gain`, `pareto_frontier`) are `llm_optimizer/objectives.py`'s, shared with
the exploration; they are re-exported here, as is every name this package had as one module.
"""

from llm_optimizer.decision.estimates import expected_impact, risk_of_worse
from llm_optimizer.decision.governance import (
    ROLLOUT_ACTIONS,
    GovernanceVerdict,
    PolicyViolation,
    apply_governance,
    apply_governance_to_arms,
    broken_limits,
    governance_breaches,
    violations,
)
from llm_optimizer.decision.models import (
    Action,
    CandidateFate,
    Check,
    Constraints,
    Decision,
    DecisionInput,
    ExploredArm,
    Guards,
    Impact,
    Memory,
    Profile,
)
from llm_optimizer.decision.pipeline import decide
from llm_optimizer.objectives import Objectives, Outcome, pareto_frontier, weighted_gain

__all__ = [
    "ROLLOUT_ACTIONS",
    "Action",
    "CandidateFate",
    "Check",
    "Constraints",
    "Decision",
    "DecisionInput",
    "ExploredArm",
    "GovernanceVerdict",
    "Guards",
    "Impact",
    "Memory",
    "Objectives",
    "Outcome",
    "PolicyViolation",
    "Profile",
    "apply_governance",
    "apply_governance_to_arms",
    "broken_limits",
    "decide",
    "expected_impact",
    "governance_breaches",
    "pareto_frontier",
    "risk_of_worse",
    "violations",
    "weighted_gain",
]
