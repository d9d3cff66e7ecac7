"""The client's own copy of the wire schema (client/optimizer_client/wire.py) cannot drift from the server's models:
the same event fields and limits, events that cross both ways, the same specs and assignments read, and the same
version for every key."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from llm_optimizer.configs import ConfigSpec, GenerationParams
from llm_optimizer.events import CloudEvent, LLMEvent, event_from_cloudevent, parse_event
from llm_optimizer.resolution import Assignment, ResolvedConfig, resolve
from optimizer_client import wire
from simulator.samples import sample_events

FULL = {
    "event_id": "e" * 128,
    "timestamp": "2026-03-01T12:00:00.250000+02:00",
    "service": "chat.v2:eu/west@blue+1",
    "endpoint": "/chat",
    "model": "gpt-4o-mini",
    "provider": "openai",
    "config_version": "v3",
    "variant": "canary",
    "latency_ms": 3_600_000.0,
    "ttft_ms": 0.0,
    "tokens_in": 10_000_000,
    "tokens_out": 0,
    "cost_usd": 10_000.0,
    "status": "timeout",
    "error_type": "ReadTimeout",
    "quality_score": 1.0,
    "user_feedback": -1.0,
    "request_key": "user-42",
    "request_text": "What is 2 + 2?",
    "response_text": "4",
    "reference_text": "4",
    "attributes": {"region": "eu", "retry": True, "attempt": 2, "temperature": 0.2, "none": None},
}


def test_the_event_has_the_same_fields_and_limits_as_the_servers():
    """JSON Schema carries every declarative rule (types, required fields, lengths, patterns, ranges, enums)."""
    assert wire.LLMEvent.model_json_schema() == LLMEvent.model_json_schema()
    assert wire.LLMEvent.model_config["extra"] == LLMEvent.model_config["extra"] == "forbid"


def test_a_client_event_is_the_same_event_on_the_server():
    for raw in (FULL, {k: FULL[k] for k in ("event_id", "timestamp", "service", "model", "provider", "latency_ms")}):
        sent = wire.LLMEvent.model_validate(raw)
        received = parse_event(json.dumps(wire.event_json(sent)))
        assert received.model_dump(mode="json") == sent.model_dump(mode="json")


def test_the_servers_events_read_as_client_events():
    for event in sample_events(50, start=datetime(2026, 1, 1, tzinfo=UTC)):
        copy = wire.LLMEvent.model_validate(event.model_dump(mode="json"))
        assert copy.model_dump(mode="json") == event.model_dump(mode="json")


def test_the_clients_cloudevent_is_read_by_the_server():
    sent = wire.LLMEvent.model_validate(FULL)
    envelope = CloudEvent.model_validate_json(json.dumps(wire.to_cloudevent(sent, "checkout")))
    assert envelope.source == "checkout" and envelope.subject == sent.service
    assert event_from_cloudevent(envelope).model_dump(mode="json") == sent.model_dump(mode="json")


def test_what_the_client_reads_has_the_servers_fields():
    for client_model, server_model in (
        (wire.ConfigSpec, ConfigSpec),
        (wire.GenerationParams, GenerationParams),
        (wire.Assignment, Assignment),
        (wire.ResolvedConfig, ResolvedConfig),
    ):
        assert list(client_model.model_fields) == list(server_model.model_fields), client_model.__name__
    spec = ConfigSpec(
        model="m",
        provider="p",
        prompt_template="Answer: {q}",
        params=GenerationParams(temperature=0.1, top_k=5, stop_sequences=["\n\n"]),
        extra={"seed": 7, "tools": [{"name": "search"}]},
    )
    read = wire.ConfigSpec.model_validate(spec.model_dump(mode="json"))
    assert read.model_dump(mode="json") == spec.model_dump(mode="json")


@st.composite
def assignments(draw) -> Assignment:
    active, canary, *arms = draw(st.permutations(["v1", "v2", "v3", "v4", "v5"]))
    canary_percent = draw(st.floats(0, 100)) if draw(st.booleans()) else 0.0
    explore: dict[str, float] = {}
    room = 100 - canary_percent
    for arm in draw(st.lists(st.sampled_from(arms), unique=True, max_size=3)):
        if room <= 0:
            break
        share = draw(st.floats(min_value=min(0.01, room), max_value=room))
        explore[arm] = share
        room -= share
    return Assignment(
        service=draw(st.sampled_from(["chat", "search", "gsm8k"])),
        active_version=active,
        canary_version=canary if canary_percent else None,
        canary_percent=canary_percent,
        explore=explore,
    )


@given(assignments(), st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=20))
def test_every_key_resolves_to_the_same_version_as_on_the_server(assignment, keys):
    copy = wire.Assignment.model_validate(assignment.model_dump(mode="json"))
    for key in keys:
        server = resolve(assignment, key)
        assert wire.resolve(copy, key) == (server.version, server.variant)
        assert wire.bucket(assignment.service, key) == server.bucket
