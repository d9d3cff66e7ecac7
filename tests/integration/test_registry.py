"""Config registry and resolution: immutable versions, sticky deterministic splits, export/import, client cache."""

from __future__ import annotations

import pytest

from llm_optimizer.configs import ConfigSpec, GenerationParams
from llm_optimizer.errors import ValidationFailed
from llm_optimizer.resolution import Assignment, bucket, resolve
from llm_optimizer.settings import Settings
from storage import configs_repo as repo
from storage.config_client import ConfigClient
from storage.db import Database

SPEC_A = ConfigSpec(model="gpt-4o", provider="openai", prompt_template="Answer: {q}")
SPEC_B = ConfigSpec(model="gpt-4o-mini", provider="openai", params=GenerationParams(temperature=0.2))


def test_canary_membership_is_sticky_as_the_percentage_grows():
    keys = [f"user-{i}" for i in range(20_000)]
    members = {}
    for percent in (5, 25, 50, 100):
        a = Assignment(service="chat", active_version="v1", canary_version="v2", canary_percent=percent)
        members[percent] = {k for k in keys if resolve(a, k).version == "v2"}
        assert abs(len(members[percent]) / len(keys) - percent / 100) < 0.01
    assert members[5] <= members[25] <= members[50] <= members[100]
    assert bucket("chat", "user-1") == bucket("chat", "user-1") != bucket("search", "user-1")


def test_an_assignment_cannot_give_traffic_to_no_canary():
    with pytest.raises(ValueError, match="canary_percent = 5"):
        Assignment(service="chat", active_version="v1", canary_percent=5)


def test_versions_are_immutable_numbered_and_registered_once(db):
    v1 = repo.register(db, "chat", SPEC_A, created_by="alice")
    v2 = repo.register(db, "chat", SPEC_B, parent_version="v1")
    again = repo.register(db, "chat", SPEC_A)
    db.commit()
    assert (v1.version, v2.version, again.version) == ("v1", "v2", "v1")
    assert v2.parent_version == "v1"
    assert repo.get_version(db, "chat", "v2").spec == SPEC_B
    with pytest.raises(ValidationFailed, match="'v9'"):
        repo.get_version(db, "chat", "v9")


def export(db, service: str) -> str:
    """One service's export as `GET /api/v1/config/export?service=` streams it: the versions page by page."""
    [(name, versions)] = repo.export_plan(db, service)
    parts = [repo.export_start(db, name, versions)]
    after = None
    while True:
        text, after = repo.export_page(db, name, after)
        parts.append(text)
        if after is None:
            return "".join(parts)


def test_export_then_import_into_an_empty_database_reproduces_the_registry(db, database_url, stack):
    repo.register(db, "chat", SPEC_A)
    repo.register(db, "chat", SPEC_B, parent_version="v1")
    repo.set_assignment(db, Assignment(service="chat", active_version="v2"), updated_by="test")
    db.commit()
    exported = export(db, "chat")

    db.execute("TRUNCATE config_assignments, config_versions CASCADE")
    imported = repo.import_yaml(db, exported)
    repo.import_yaml(db, exported)  # idempotent
    db.commit()
    assert [v.version for v in imported] == ["v1", "v2"]
    assert repo.get_assignment(db, "chat").active_version == "v2"
    with pytest.raises(ValidationFailed, match=r"versions\.0\.spec\.params\.temperature"):
        repo.import_yaml(db, exported.replace("temperature: 0.7", "temperature: 9"))


def test_client_resolves_with_a_short_cache(db, database_url):
    repo.register(db, "chat", SPEC_A)
    repo.register(db, "chat", SPEC_B)
    repo.set_assignment(db, Assignment(service="chat", active_version="v1"), updated_by="test")
    db.commit()
    now = [0.0]
    pool = Database(Settings(database={"url": database_url}), name="test-registry")
    client = ConfigClient(pool, ttl_s=5, clock=lambda: now[0])
    try:
        assert client.resolve("chat", "k").spec == SPEC_A
        repo.set_assignment(
            db, Assignment(service="chat", active_version="v1", canary_version="v2", canary_percent=100), updated_by="t"
        )
        db.commit()
        assert client.resolve("chat", "k").version == "v1"  # still cached
        now[0] = 6.0
        resolved = client.resolve("chat", "k")
        assert (resolved.version, resolved.variant, resolved.spec) == ("v2", "canary", SPEC_B)
        with pytest.raises(ValidationFailed, match="'nope' has no config"):
            client.resolve("nope", "k")
    finally:
        pool.close()
