"""Errors of the local stack: a server that cannot be started, reached or stopped."""

from llm_optimizer.errors import OptimizerError


class StackError(OptimizerError):
    """A server of the local stack cannot be started, reached or stopped."""


class PortInUse(StackError):
    """A port that the local stack needs is already taken by another process."""


class BinaryNotFound(StackError):
    """A server binary is missing: the `servers` extra is not installed."""
