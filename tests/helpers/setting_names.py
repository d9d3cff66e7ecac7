"""Every setting's dotted key and environment variable, for the tests that hold the docs and deploy files to them.

The variable's spelling is read from Settings' own configuration (pydantic-settings' env_prefix and
env_nested_delimiter), so it cannot drift from what the process reads."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from llm_optimizer.settings import Settings


def setting_keys(model: type[BaseModel] = Settings, prefix: str = "") -> dict[str, Any]:
    """Every dotted setting key with its default, e.g. ``{"kafka.topic": "llm-events", ...}``."""
    keys: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.update(setting_keys(annotation, f"{prefix}{name}."))
        else:
            keys[f"{prefix}{name}"] = field.default
    return keys


def env_name(key: str) -> str:
    """The environment variable of a dotted key: ``kafka.topic`` -> ``OPTIMIZER_KAFKA__TOPIC``."""
    config = Settings.model_config
    delimiter = config["env_nested_delimiter"]
    assert delimiter is not None
    return config["env_prefix"] + delimiter.join(part.upper() for part in key.split("."))
