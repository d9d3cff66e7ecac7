"""The project's error hierarchy: stable types that retry policies can name and users can read."""


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


class OrchestratorRejected(OptimizerError):
    """The orchestrator or gateway refused a traffic split (a 4xx other than 408/409/429): retrying will not help."""


class ControlRefused(OptimizerError):
    """An operator's control that the cycle refuses; the message names the field, the value and why."""


class KafkaJoinTimeout(OptimizerError):
    """A new Kafka consumer got no partitions from its group within `kafka.join_timeout_s` (retryable)."""
