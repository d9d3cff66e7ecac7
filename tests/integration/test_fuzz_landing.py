"""Decoding and landing together, fuzzed against the real Postgres: every message, however hostile (NUL characters,
NaN and Infinity, instants at and past the ends of the range, booleans for numbers, nested junk, unpaired
surrogates, bytes that are not JSON), ends as exactly one row or exactly one dead letter, and the event model, not
the database, is what refuses it (issue 19: nothing Postgres can refuse reaches it unvalidated)."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from helpers.fixture_prices import fixture_book
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from api.routes.ingest import _parse
from llm_optimizer.decoding import Decoder
from llm_optimizer.events import SENTINEL_ANOMALY_EVENT_TYPE, DeadLetterCode, LLMEvent, to_cloudevent
from simulator.samples import sample_events
from storage.events_repo import EVENT_COLUMNS, land

PRICES = fixture_book()
EVENTS = list(sample_events(40, seed=19))
FIELDS = [
    "timestamp", "service", "endpoint", "model", "provider", "config_version", "variant", "latency_ms", "ttft_ms",
    "tokens_in", "tokens_out", "cost_usd", "status", "error_type", "quality_score", "user_feedback", "request_key",
    "request_text", "response_text", "attributes", "surprise",
]  # fmt: skip
INSTANTS = [
    "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "0000-12-31T23:00:00Z", "9999-12-31T23:59:59.999999Z",
    "9999-12-31T23:59:59-01:00", "1970-01-01T00:00:00Z", "2026-11-01T12:00:00+14:00", "2026-11-01T12:00:00",
    "12345", "1700000000000", "2026-02-30T00:00:00Z",
]  # fmt: skip
NASTY = [
    None, True, False, 0, -0.0, 1, -1, 12345, 1.7e12, 5e-324, 1e-320, 1e308, 10**30, float("nan"), float("inf"),
    float("-inf"), "", " ", "\x00", "a\x00b", "\ud800", "x" * 300, "ok", "error", "canary", "[1]", "1.5", [], {},
    [float("nan")], {"a": {"b": [1, float("inf"), "\x00"]}}, {"k\x00": 1}, {"k": "v\x00"}, *INSTANTS,
]  # fmt: skip
SCALARS = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=12),  # includes NUL and other control characters
    st.floats(),  # includes NaN, the infinities, subnormals
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
)
JUNK = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


TEXTS = st.text(max_size=10) | st.sampled_from(["a\x00b", "\x00", " padded ", "x" * 300, "\ud800", "é🙂"])
NUMBERS = st.floats(0, 1) | st.sampled_from(
    [True, False, float("nan"), float("inf"), 5e-324, 1e-320, -0.0, 0, 1, "1", 1e308]
)
ODD_ATTRIBUTES = [
    {}, {"k": "v\x00"}, {"k\x00": 1}, {"k": float("nan")}, {"k": float("inf")}, {"k": float("-inf")},
    {"k": 10**30}, {"k": 5e-324}, {"k": -0.0}, {"k": "\ud800"}, {"k" * 129: 1}, {"k": "x" * 1025},
    {"k": {"nested": 1}}, {"": ""}, {"k": None},
]  # fmt: skip
# One field changed to something hostile, the rest of the event valid: what reaches the landing if the model lets it.
TARGETED = {
    "attributes": st.builds(
        lambda plain, odd: {**plain, **odd},
        st.dictionaries(st.text("ab.", max_size=4), st.integers() | st.text(max_size=5) | st.booleans(), max_size=3),
        st.sampled_from(ODD_ATTRIBUTES) | st.dictionaries(TEXTS, SCALARS, max_size=2),
    ),
    "timestamp": st.sampled_from(INSTANTS) | st.sampled_from(INSTANTS[:5]) | st.integers() | st.floats(),
    "endpoint": TEXTS,
    "request_key": TEXTS,
    "config_version": TEXTS,
    "error_type": TEXTS,
    "request_text": TEXTS,
    "latency_ms": NUMBERS,
    "tokens_out": NUMBERS,
    "cost_usd": NUMBERS,
    "quality_score": NUMBERS,
    "user_feedback": NUMBERS,
}


@st.composite
def message(draw, event_id: str) -> tuple[bytes | None, list[tuple[str, bytes]], str]:
    """(value, headers, what should be looked for): an event id, an anomaly id prefix, or "" for neither."""
    shape = draw(st.sampled_from(["bare", "structured", "structured", "binary", "anomaly", "garbage"]))
    if shape == "garbage":
        return draw(st.sampled_from([None, b"", b"\xff\xfe", b"{", b"[1,2]", b"null", b"NaN", b'"\\u0000"'])), [], ""
    if shape == "anomaly":
        data = {"anomaly_type": "latency_spike", "severity": "high", "affected_services": ["chat", "search"]}
        if draw(st.booleans()):
            data["metrics"] = {"p95": draw(JUNK)}
        if draw(st.booleans()):
            data[draw(st.sampled_from(["anomaly_type", "root_cause_hypothesis", "extra"]))] = draw(JUNK | TEXTS)
        envelope = {
            "specversion": "1.0",
            "type": SENTINEL_ANOMALY_EVENT_TYPE,
            "source": "sentinel",
            "id": event_id + draw(st.sampled_from(["", "", "\x00"])),
            "time": draw(st.sampled_from(["2026-11-09T12:05:30Z", *INSTANTS])),
            "data": data,
        }
        return _bytes(envelope, draw), [], event_id
    base = EVENTS[draw(st.integers(0, len(EVENTS) - 1))]
    event = base.model_dump(mode="json", exclude_none=True)
    event["event_id"] = event_id + draw(st.sampled_from(["", "", "", " ", "\x00"]))
    mode = draw(st.sampled_from(["targeted", "targeted", "targeted", "clean", "wild"]))
    if mode == "targeted":
        name = draw(st.sampled_from(sorted(TARGETED)))
        event[name] = draw(TARGETED[name])
        if name == "error_type":
            event["status"] = "error"
        if name == "latency_ms":
            event.pop("ttft_ms", None)
    elif mode == "wild":
        for name in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True)):
            event[name] = draw(SCALARS if draw(st.booleans()) else JUNK)
    if shape == "bare":
        return _bytes(event, draw), [], event_id
    envelope = to_cloudevent(base)
    envelope["id"] = event_id
    if shape == "binary":
        headers = [(f"ce_{k}", str(v).encode()) for k, v in envelope.items() if k != "data"]
        return _bytes(event, draw), headers, event_id
    envelope["data"] = event
    return _bytes(envelope, draw), [], event_id


def _bytes(document, draw) -> bytes:
    # NaN and Infinity are written as such (not JSON, but what careless clients send); unpaired surrogates as they
    # are, which makes bytes that are not UTF-8, or as escapes, which the readers refuse.
    text = json.dumps(document, ensure_ascii=draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass")


@st.composite
def batches(draw):
    run = uuid.uuid4().hex[:10]
    count = draw(st.integers(1, 25))
    messages = [draw(message(f"fz-{run}-{i}")) for i in range(count)]
    path = draw(st.sampled_from(["columnar", "one-pass", "general", "http"]))
    return run, messages, path


def decode(run: str, messages, path: str):
    positions = [f"fz/{run}/{i}" for i in range(len(messages))]
    if path == "http":
        documents = []
        for position, (value, _, _) in zip(positions, messages, strict=True):
            try:  # as the HTTP route reads a batch (NaN and Infinity included), one document at a time
                documents.append((position, _parse(value or b"")))
            except ValueError:
                documents.append((position, None))  # a document that is not JSON: refused by index
        return Decoder(PRICES, source="http", max_message_bytes=1 << 16).decode_documents(documents), positions
    decoder = Decoder(
        PRICES,
        source="kafka",
        max_message_bytes=1 << 16,
        fast=path != "general",
        columnar_from=1 if path == "columnar" else None,
    )
    triples = [(p, v, h) for p, (v, h, _) in zip(positions, messages, strict=True)]
    return decoder.decode(triples), positions


@pytest.fixture
def conn(database_url):
    with psycopg.connect(database_url) as connection:
        yield connection


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batches())
# Found by this test: over HTTP, Python's JSON reader let a lone surrogate (CESU-8 bytes) into an anomaly's field,
# and its landing failed to serialize it (api/routes/ingest.py `_parse` now decodes strict UTF-8 first).
@example(
    (
        "6206884078",
        [
            (
                b'{"specversion": "1.0", "type": "com.llmdevops.sentinel.anomaly.v1", "source": "sentinel", '
                b'"id": "fz-6206884078-0", "time": "2026-11-09T12:05:30Z", "data": {"anomaly_type": "latency_spike", '
                b'"severity": "high", "affected_services": ["chat", "search"], "extra": "\xed\xa0\x80"}}',
                [],
                "fz-6206884078-0",
            )
        ],
        "http",
    )
)
def test_every_message_ends_as_exactly_one_row_or_one_dead_letter(conn, batch):
    run, messages, path = batch
    decoded, positions = decode(run, messages, path)
    counts = land(conn, decoded, source="kafka" if path != "http" else "http")
    conn.commit()

    refused_by_db = [d.reason for d in decoded.dead_letters if d.code is DeadLetterCode.db_refused]
    assert not refused_by_db, f"the model let through what Postgres refused: {refused_by_db}"

    columns = [c for c in EVENT_COLUMNS if c != "source"]
    rows = conn.execute(f"SELECT {', '.join(columns)} FROM events WHERE event_id LIKE %s", (f"fz-{run}-%",)).fetchall()
    anomaly_ids = [
        r[0] for r in conn.execute("SELECT anomaly_id FROM anomalies WHERE anomaly_id LIKE %s", (f"fz-{run}-%",))
    ]
    dead = {r[0] for r in conn.execute("SELECT position FROM dead_letters WHERE position LIKE %s", (f"fz/{run}/%",))}
    landed_ids = [r[0] for r in rows]
    assert len(landed_ids) == len(set(landed_ids))
    for position, (_, _, looked_for) in zip(positions, messages, strict=True):
        as_row = looked_for != "" and looked_for in landed_ids
        as_anomaly = looked_for != "" and any(a.startswith(f"{looked_for}/") for a in anomaly_ids)
        outcomes = int(as_row) + int(as_anomaly) + int(position in dead)
        assert outcomes == 1, (position, messages[positions.index(position)], decoded.dead_letters)
    assert counts.accepted == len(landed_ids) and counts.dead_lettered == len(dead)

    # What landed reads back as a valid event (an instant Python can hold, attributes that are JSON).
    for row in rows:
        record = {k: v for k, v in zip(columns, row, strict=True) if v is not None}
        record["timestamp"] = record.pop("ts")
        LLMEvent.model_validate(record)
