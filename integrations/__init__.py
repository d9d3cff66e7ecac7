"""Clients of the systems around the loop, over httpx, each with timeouts, retries and a circuit breaker:
the LLM judge (any OpenAI-compatible endpoint), the model registry, the governance service. The orchestrator push
is `integrations/orchestrator.py`."""
