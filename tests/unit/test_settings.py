"""Settings: environment, YAML and defaults combine as documented; wrong values fail naming key and value."""

from __future__ import annotations

import re

import pytest
from helpers.setting_names import env_name, setting_keys

from llm_optimizer.errors import SettingsError
from llm_optimizer.settings import load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("OPTIMIZER_") or name in ("DATABASE_URL", "KAFKA_BROKERS", "TEMPORAL_ADDRESS", "LOG_LEVEL"):
            monkeypatch.delenv(name)


def test_defaults_point_at_the_local_stack():
    settings = load_settings()
    assert settings.database_url == "postgresql+psycopg://postgres@127.0.0.1:5433/optimizer"
    assert settings.kafka_brokers == ["127.0.0.1:9092"]
    assert settings.temporal_address == "127.0.0.1:7233"


def test_precedence_env_over_short_env_over_yaml(tmp_path, monkeypatch):
    config = tmp_path / "config.yaml"
    config.write_text(
        "server: {port: 9000}\n"
        "database: {url: 'postgresql://yaml/db'}\n"
        "kafka: {brokers: [k1:9092], topic: from-yaml}\n"
        "optimization: {interval_s: 300, canary: {min_samples: 50}}\n"
    )
    monkeypatch.setenv("OPTIMIZER_CONFIG_FILE", str(config))
    monkeypatch.setenv("KAFKA_BROKERS", "a:1, b:2")
    monkeypatch.setenv("OPTIMIZER_KAFKA__TOPIC", "from-env")
    settings = load_settings()
    assert settings.server.port == 9000
    assert settings.database_url == "postgresql+psycopg://yaml/db"
    assert settings.kafka_brokers == ["a:1", "b:2"]
    assert settings.kafka.topic == "from-env"
    assert settings.optimization.canary.min_samples == 50
    assert settings.optimization.canary.rollout == "canary"
    monkeypatch.setenv("OPTIMIZER_OPTIMIZATION__CANARY__ROLLOUT", "blue_green")
    assert load_settings().optimization.canary.rollout == "blue_green"

    monkeypatch.setenv("DATABASE_URL", "postgres://prod/optimizer")
    assert load_settings().database_url == "postgresql+psycopg://prod/optimizer"


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("OPTIMIZER_SERVER__PORT", "99999", "server.port = '99999'"),
        ("OPTIMIZER_KAFKA__BATCH_MAX_EVENTS", "lots", "kafka.batch_max_events = 'lots'"),
        ("OPTIMIZER_OPTIMIZATION__STRATEGY", "reckless", "optimization.strategy = 'reckless'"),
        ("OPTIMIZER_OPTIMIZATION__CANARY__QUALITY_DECREASE", "1.5", "optimization.canary.quality_decrease = '1.5'"),
        ("OPTIMIZER_OPTIMIZATION__CANARY__ROLLOUT", "big_bang", "optimization.canary.rollout = 'big_bang'"),
        ("DATABASE_URL", "mysql://x", "database.url = 'mysql://x'"),
        ("OPTIMIZER_KAFKA__TOPICS", "x", "kafka.topics = 'x'"),
        ("OPTIMIZER_REDIS__URL", "redis://", "OPTIMIZER_REDIS__URL = 'redis://'"),
    ],
)
def test_wrong_values_fail_at_start_naming_key_and_value(monkeypatch, variable, value, named):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert named in str(err.value)


def test_yaml_problems_are_named(tmp_path, monkeypatch):
    config = tmp_path / "config.yaml"
    config.write_text("redis: {url: 'redis://localhost'}\nserver: {port: 0}\n")
    monkeypatch.setenv("OPTIMIZER_CONFIG_FILE", str(config))
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "redis = " in str(err.value) and "server.port = 0" in str(err.value)

    monkeypatch.setenv("OPTIMIZER_CONFIG_FILE", str(tmp_path / "missing.yaml"))
    with pytest.raises(SettingsError, match=r"missing\.yaml.*cannot read"):
        load_settings()


def test_configuration_doc_lists_every_setting_and_no_other(repo_root):
    doc = (repo_root / "docs" / "configuration.md").read_text()
    keys = setting_keys()
    for key in keys:
        assert f"`{key}`" in doc, f"docs/configuration.md does not list {key}"
        assert f"`{env_name(key)}`" in doc, f"docs/configuration.md does not name {env_name(key)}"
    documented = set(re.findall(r"^\| `([a-z_]+\.[a-z_.]+)`", doc, flags=re.M))
    assert documented == set(keys), documented ^ set(keys)
