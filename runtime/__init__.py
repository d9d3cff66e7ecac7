"""Runtime infrastructure shared by the worker, the API, the starters and the devstack: the Temporal client and
schedules, metrics, tracing, logs, resilience and health. Imported by entry points and adapters, never by the
domain (`llm_optimizer/`)."""
