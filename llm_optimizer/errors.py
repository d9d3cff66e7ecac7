"""The project's error hierarchy: stable types that retry policies can name and users can read.

Every error the server side raises on purpose is defined here, under `OptimizerError`:

* OptimizerError
  + SettingsError
  + ValidationFailed - non-retryable (workflows/options.py `NON_RETRYABLE`)
    - UnsafeYaml - also a `yaml.YAMLError`
    - Undecodable
    - VersionConflict
    - ExportTooLarge
  + PayloadRefused - also a `ValueError`
  + ControlRefused
  + BodyTooLarge
  + NotEvaluable
  + Unavailable
  + CircuitOpen
  + OrchestratorRejected - non-retryable
  + KafkaJoinTimeout
  + Unhealthy
  + StackError
    - PortInUse
    - BinaryNotFound

An activity's exception reaches its workflow as an `ApplicationError` whose `type` is the class's name, and Temporal
matches retry policies' `non_retryable_error_types` by that exact name, not by subclass: the names here are part of
the product's interface (workflow histories, `temporal workflow describe`, tests that assert `failure.type`). Rename
none of them. The client (`client/optimizer_client`, its own distribution) has its own `OptimizerError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from llm_optimizer.events import DeadLetterCode


class OptimizerError(Exception):
    """Base class of every error this project raises on purpose."""


class SettingsError(OptimizerError):
    """A setting has a wrong value or a configuration file cannot be read."""


class ValidationFailed(OptimizerError):
    """Input data (an event, a config, a payload) does not satisfy the data model."""

    def __init__(self, message: str, *, field: str | None = None, value: object = None):
        super().__init__(message)
        self.field = field
        self.value = value


class UnsafeYaml(yaml.YAMLError, ValidationFailed):
    """A YAML text that is malformed, or that the limits of `llm_optimizer/yamlsafe.py` refuse."""

    def __init__(self, message: str):
        ValidationFailed.__init__(self, message)


class Undecodable(ValidationFailed):
    """Input refused at a step of decoding other than the event model's validation; `code` names the step."""

    def __init__(self, code: DeadLetterCode, message: str, *, field: str | None = None, value: object = None):
        super().__init__(message, field=field, value=value)
        self.code = code


class VersionConflict(ValidationFailed):
    """A version name that the service already has, with another spec: versions are immutable."""


class ExportTooLarge(ValidationFailed):
    """An export that would write more than the bounds allow."""


class PayloadRefused(OptimizerError, ValueError):
    """An operator's payload that is not applied; the message names the field and the value (docs/operations.md)."""


class ControlRefused(OptimizerError):
    """An operator's control that the cycle refuses; the message names the field, the value and why."""


class BodyTooLarge(OptimizerError):
    """A request body over `server.max_body_bytes`, counted while it streams in: the API answers 413."""


class NotEvaluable(OptimizerError):
    """The evaluator cannot score this item (e.g. a reference-based evaluator without a reference)."""


class Unavailable(OptimizerError):
    """The service did not answer usefully (after retries), or its circuit is open."""


class CircuitOpen(OptimizerError):
    """The breaker refused the call: the service failed too often recently."""


class OrchestratorRejected(OptimizerError):
    """The orchestrator or gateway refused a traffic split (a 4xx other than 408/409/429): retrying will not help."""


class KafkaJoinTimeout(OptimizerError):
    """A new Kafka consumer got no partitions from its group within `kafka.join_timeout_s` (retryable)."""


class Unhealthy(OptimizerError):
    """A probe reached its dependency and found it wanting."""


class StackError(OptimizerError):
    """A server of the local stack cannot be started, reached or stopped."""


class PortInUse(StackError):
    """A port that the local stack needs is already taken by another process."""


class BinaryNotFound(StackError):
    """A server binary is missing: the `servers` extra is not installed."""
