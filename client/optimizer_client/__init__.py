"""The typed Python client of llm-auto-optimizer, for applications (`pip install ./client` from a clone).

    from optimizer_client import OptimizerClient

    client = OptimizerClient("http://optimizer:8080", api_key=os.environ["LLM_OPTIMIZER_API_KEY"])
    config = client.resolve("chat", key=user_id)           # cached: no network call while the assignment is fresh
    ... call config.spec.model with config.spec.params ...
    client.report([event])                                  # or KafkaReporter, or OpenTelemetry (otel.py)

It needs httpx and pydantic only; `KafkaReporter` needs the `kafka` extra (aiokafka) and `optimizer_client.otel`
the `otel` extra (opentelemetry-api). See docs/api.md for a runnable example.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from optimizer_client.http import IngestResult, OptimizerClient, OptimizerError
from optimizer_client.wire import ConfigSpec, LLMEvent, ResolvedConfig, Status, Variant

if TYPE_CHECKING:
    from optimizer_client.kafka import KafkaReporter

__all__ = [
    "ConfigSpec",
    "IngestResult",
    "KafkaReporter",
    "LLMEvent",
    "OptimizerClient",
    "OptimizerError",
    "ResolvedConfig",
    "Status",
    "Variant",
]


def __getattr__(name: str) -> Any:
    # Imported on first use: aiokafka is an extra, and an application without it still imports the HTTP client.
    if name == "KafkaReporter":
        from optimizer_client.kafka import KafkaReporter

        return KafkaReporter
    raise AttributeError(f"module 'optimizer_client' has no attribute {name!r}")
