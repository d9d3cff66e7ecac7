"""Domain logic of llm-auto-optimizer: data model, settings, statistics and decisions (no I/O)."""

from llm_optimizer.errors import (
    BinaryNotFound,
    OptimizerError,
    PortInUse,
    SettingsError,
    StackError,
    ValidationFailed,
)

__all__ = [
    "BinaryNotFound",
    "OptimizerError",
    "PortInUse",
    "SettingsError",
    "StackError",
    "ValidationFailed",
]
