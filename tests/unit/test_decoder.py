"""Every raw message becomes an event, anomalies or a dead letter with its code and reason: none is dropped."""

from __future__ import annotations

import json

import pytest
from helpers.fixture_prices import fixture_book
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_optimizer.decoding import Decoder, _one_pass
from llm_optimizer.events import SENTINEL_ANOMALY_EVENT_TYPE, to_cloudevent
from llm_optimizer.events import DeadLetterCode as Code
from simulator.samples import sample_events

EVENT = next(sample_events(1))


@pytest.fixture
def decoder() -> Decoder:
    return Decoder(fixture_book(), source="kafka", max_message_bytes=4096)


def one(decoder: Decoder, value: bytes | None, headers=()):
    return decoder.decode([("t/0/7", value, list(headers))])


def test_three_formats_give_the_same_event(decoder):
    structured = json.dumps(to_cloudevent(EVENT)).encode()
    bare = EVENT.model_dump_json().encode()
    envelope = to_cloudevent(EVENT)
    headers = [(f"ce_{k}", str(v).encode()) for k, v in envelope.items() if k != "data"]
    binary = json.dumps(envelope["data"]).encode()
    decoded = [one(decoder, structured).events, one(decoder, bare).events, one(decoder, binary, headers).events]
    assert decoded[0] == decoded[1] == decoded[2]
    assert len(decoded[0]) == 1
    # Costed from the catalog because the sample carries no cost.
    assert decoded[0][0].cost_usd == pytest.approx(
        fixture_book().price(EVENT.model).cost(EVENT.tokens_in, EVENT.tokens_out)
    )


BARE = json.loads(EVENT.model_dump_json())
ALERT = {
    "specversion": "1.0",
    "type": SENTINEL_ANOMALY_EVENT_TYPE,
    "source": "llm-sentinel",
    "id": "a1",
    "time": "2026-11-09T12:05:30Z",
    "data": {"anomaly_type": "latency_spike", "severity": "high", "affected_services": ["chat"]},
}
BINARY = [(f"ce_{k}", str(v).encode()) for k, v in to_cloudevent(EVENT).items() if k != "data"]

# Every way the decoder refuses a message: its code, a piece of its text, and the headers it came with.
REFUSALS = [
    (b"\xff\xfe\x00garbage", Code.not_utf8, "not UTF-8", ()),
    (b"{}", Code.not_utf8, "a ce_ header is not UTF-8", [*BINARY, ("ce_subject", b"\xff")]),
    (b"{not json", Code.not_json, "not valid JSON", ()),
    (json.dumps({**to_cloudevent(EVENT), "data": "{oops"}).encode(), Code.not_json, "data: not valid JSON", ()),
    (b"[1, 2]", Code.not_an_object, "JSON list", ()),
    (json.dumps({**to_cloudevent(EVENT), "data": 7}).encode(), Code.not_an_object, "data = int", ()),
    (None, Code.no_body, "tombstone", ()),
    (b"x" * 5000, Code.too_large, "larger than kafka.max_message_bytes", ()),
    (json.dumps({**BARE, "latency_ms": -3}).encode(), Code.invalid_event, "latency_ms = -3", ()),
    (
        json.dumps({**BARE, "latency_ms": 1e12}).encode(),
        Code.invalid_event,
        "latency_ms = 1000000000000.0: Input should be less than or equal",
        (),
    ),
    (json.dumps({**to_cloudevent(EVENT), "specversion": "0.3"}).encode(), Code.invalid_envelope, "specversion", ()),
    (json.dumps({**to_cloudevent(EVENT), "type": "com.example.x"}).encode(), Code.invalid_envelope, "com.example", ()),
    (json.dumps({**ALERT, "data": {**ALERT["data"], "severity": "?"}}).encode(), Code.invalid_anomaly, "anomaly:", ()),
    (json.dumps({k: v for k, v in ALERT.items() if k != "time"}).encode(), Code.invalid_anomaly, "no `time`", ()),
]


@pytest.mark.parametrize(("value", "code", "reason", "headers"), REFUSALS)
def test_bad_messages_become_dead_letters_with_code_reason_position_and_bytes(decoder, value, code, reason, headers):
    batch = one(decoder, value, headers)
    assert batch.events == [] and batch.anomalies == []
    [dead] = batch.dead_letters
    assert dead.code is code and reason in dead.reason
    assert dead.position == "t/0/7" and dead.source == "kafka"
    assert dead.raw == (value or b"")


def test_every_code_the_decoder_can_give_is_given_above():
    # The others come after decoding: Postgres (storage/events_repo.py), OTLP spans (api/otlp.py), old rows.
    after = {Code.db_refused, Code.invalid_span, Code.unknown}
    assert {code for _, code, _, _ in REFUSALS} == set(Code) - after


def test_a_poison_message_between_good_ones_only_costs_itself(decoder):
    good = [e.model_dump_json().encode() for e in sample_events(5)]
    messages = [(f"t/0/{i}", v, []) for i, v in enumerate([good[0], good[1], b"{oops", good[2], good[3], good[4]])]
    batch = decoder.decode(messages)
    assert len(batch.events) == 5
    assert [d.position for d in batch.dead_letters] == ["t/0/2"]


def test_sentinel_alert_becomes_one_anomaly_per_affected_service(decoder):
    alert = {
        "specversion": "1.0",
        "type": SENTINEL_ANOMALY_EVENT_TYPE,
        "source": "llm-sentinel",
        "id": "a1",
        "time": "2026-11-09T12:05:30Z",
        "data": {
            "anomaly_type": "performance_degradation",
            "severity": "high",
            "affected_services": ["chat", "search"],
            "metrics": {"latency_p95": {"current": 5432.1, "baseline": 1234.5}},
        },
    }
    batch = one(decoder, json.dumps(alert).encode())
    assert [(a.anomaly_id, a.service, a.alert.severity) for a in batch.anomalies] == [
        ("a1/chat", "chat", "high"),
        ("a1/search", "search", "high"),
    ]
    bad = {**alert, "data": {**alert["data"], "severity": "apocalyptic"}}
    assert "anomaly: severity = 'apocalyptic'" in one(decoder, json.dumps(bad).encode()).dead_letters[0].reason


# ---- the one-pass parse decides exactly as the general path does ----

ODD_VALUES = st.sampled_from(
    [None, -1, 0, 1.5, 3_600_001, "", "  padded  ", "bad name!", "x" * 200, "2026-11-01T12:00:00", True, [], {},
     # What the one-pass validator checks its own way (events.py): NUL, booleans, bare numbers, the range, attributes.
     False, "7", "1.5", "a\x00b", " x\x00", 12345, 1.7e12, "1700000000", " 1.7e9 ", float("nan"), float("inf"),
     "0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00Z", "0002-01-01T00:00:00+23:59", "9999-12-31T23:59:59-01:00",
     "9999-12-31T23:59:59.999999Z", "9998-12-31T23:59:59-23:59", " 2026-11-01T12:00:00Z", "2026-11-01 12:00:00z",
     {"k\x00": 1}, {"k": "v\x00"}, {"k": 1.5}, {"k": True, "n": 10**30}, {"k": float("nan")}, {"k": [1]},
     {f"k{i}": i for i in range(64)}, {f"k{i}": i for i in range(65)}]
)  # fmt: skip
FIELDS = [
    "event_id",
    "timestamp",
    "service",
    "model",
    "provider",
    "endpoint",
    "latency_ms",
    "ttft_ms",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "status",
    "error_type",
    "quality_score",
    "user_feedback",
    "variant",
    "request_text",
    "attributes",
    "surprise",
]


@st.composite
def messages(draw) -> bytes:
    event = EVENT.model_dump(mode="json", exclude_none=True)
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3, unique=True)):
        if draw(st.booleans()):
            event.pop(name, None)
        else:
            event[name] = draw(ODD_VALUES)
    shape = draw(st.sampled_from(["bare", "structured", "structured-no-id-in-data", "string-data", "odd-envelope"]))
    if shape == "bare":
        return json.dumps(event).encode()
    envelope = to_cloudevent(EVENT)
    envelope["data"] = event
    if shape == "structured-no-id-in-data":
        event.pop("event_id", None)
        event.pop("timestamp", None)
    elif shape == "string-data":
        envelope["data"] = json.dumps(event)
    elif shape == "odd-envelope":
        envelope[draw(st.sampled_from(["id", "type", "time", "specversion", "source"]))] = draw(ODD_VALUES)
        envelope["x-extension"] = "kept"
    return json.dumps(envelope).encode()


@settings(max_examples=400, deadline=None)
@given(messages())
def test_the_one_pass_parse_and_the_general_path_agree(value):
    catalog = fixture_book()
    fast = Decoder(catalog, source="kafka", max_message_bytes=1 << 20).decode([("p", value, [])])
    general = Decoder(catalog, source="kafka", max_message_bytes=1 << 20, fast=False).decode([("p", value, [])])
    assert [e.model_dump() for e in fast.events] == [e.model_dump() for e in general.events]
    assert [(d.code, d.reason) for d in fast.dead_letters] == [(d.code, d.reason) for d in general.dead_letters]
    assert len(fast.events) + len(fast.dead_letters) + len(fast.anomalies) >= 1  # nothing is dropped


def test_the_common_shapes_take_the_one_pass_parse():
    assert _one_pass(json.dumps(to_cloudevent(EVENT)).encode()) == EVENT
    assert _one_pass(EVENT.model_dump_json().encode()) == EVENT
    without_id = to_cloudevent(EVENT)
    del without_id["data"]["event_id"]
    assert _one_pass(json.dumps(without_id).encode()) is None  # the general path fills it from the envelope


def test_an_anomaly_postgres_could_not_store_is_refused_by_name(decoder):
    alert = {
        "specversion": "1.0",
        "type": SENTINEL_ANOMALY_EVENT_TYPE,
        "source": "llm-sentinel",
        "id": "a2",
        "time": "2026-11-09T12:05:30Z",
        "data": {"anomaly_type": "latency_spike", "severity": "high", "affected_services": ["chat"]},
    }
    cases = {
        "anomaly: data['metrics']['p95'] = nan: not a finite number": {
            **alert,
            "data": {**alert["data"], "metrics": {"p95": float("nan")}},
        },
        "anomaly: id = 'a2\\x00': contains a NUL character": {**alert, "id": "a2\x00"},
        "anomaly: data['extra'][0] = 'x\\x00': contains a NUL character": {
            **alert,
            "data": {**alert["data"], "extra": ["x\x00"]},
        },
        "CloudEvent: time = 1762689930: Value error, a bare number is ambiguous": {**alert, "time": 1762689930},
    }
    for says, document in cases.items():
        # NaN is not JSON for the Kafka path ("not valid JSON"); the HTTP route reads it, as documents.
        as_http = "nan" in says
        batch = decoder.decode_documents([("p", document)]) if as_http else one(decoder, json.dumps(document).encode())
        assert batch.anomalies == [], says
        assert says in batch.dead_letters[0].reason, (says, batch.dead_letters[0].reason)


def test_documents_refused_carry_their_index_and_accepted_ones_keep_it_for_postgres(decoder):
    documents = [(f"http/k/{i}", d) for i, d in enumerate([BARE, [1], {**BARE, "latency_ms": -1}, ALERT])]
    batch = decoder.decode_documents(documents)
    assert [(d.index, d.position, d.code) for d in batch.dead_letters] == [
        (1, "http/k/1", Code.not_an_object),
        (2, "http/k/2", Code.invalid_event),
    ]
    # Should Postgres refuse the event or the anomaly, its dead letter is made from these (storage/events_repo.py).
    assert [(o.index, o.position) for o in batch.event_origins] == [(0, "http/k/0")]
    assert [(o.index, o.position) for o in batch.anomaly_origins] == [(3, "http/k/3")]
