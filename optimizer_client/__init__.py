"""The typed Python client of llm-auto-optimizer, for applications.

    from optimizer_client import OptimizerClient

    client = OptimizerClient("http://optimizer:8080", api_key=os.environ["LLM_OPTIMIZER_API_KEY"])
    config = client.resolve("chat", key=user_id)           # cached: no network call while the assignment is fresh
    ... call config.spec.model with config.spec.params ...
    client.report([event])                                  # or KafkaReporter, or OpenTelemetry (otel.py)

See docs/api.md for a runnable example.
"""

from optimizer_client.http import IngestResult, OptimizerClient, OptimizerError
from optimizer_client.kafka import KafkaReporter
from storage.config_client import ResolvedConfig

__all__ = ["IngestResult", "KafkaReporter", "OptimizerClient", "OptimizerError", "ResolvedConfig"]
