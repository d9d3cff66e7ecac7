"""Domain logic of llm-auto-optimizer: data model, settings, statistics and decisions (no I/O)."""

from llm_optimizer.errors import OptimizerError, SettingsError, ValidationFailed

__all__ = ["OptimizerError", "SettingsError", "ValidationFailed"]
