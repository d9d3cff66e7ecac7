"""The project's custom search attributes: one place for their names, types and typed keys.

Every workflow of a service carries `Service`; cycles add `CycleState` and `ConfigVersion` (the live version);
canaries and explorations add `ConfigVersion` (the version on trial) and `RolloutState`.

The lowest layer that may use Temporal's types (the domain, `llm_optimizer/`, does not), below the workflows and the
activities that both read them; pure names, so the workflows' sandbox loads it as it is.
"""

from temporalio.common import SearchAttributeKey

SERVICE = SearchAttributeKey.for_keyword("Service")
CYCLE_STATE = SearchAttributeKey.for_keyword("CycleState")
CONFIG_VERSION = SearchAttributeKey.for_keyword("ConfigVersion")
ROLLOUT_STATE = SearchAttributeKey.for_keyword("RolloutState")

# Name -> Temporal's indexed value type, as `temporal server start-dev --search-attribute` and the operator API take.
SEARCH_ATTRIBUTES: dict[str, str] = {
    key.name: "Keyword" for key in (SERVICE, CYCLE_STATE, CONFIG_VERSION, ROLLOUT_STATE)
}
