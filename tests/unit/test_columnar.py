"""The columnar decoding decides every message exactly as the per-message path does, only faster."""

from __future__ import annotations

import json

import polars as pl
from helpers.fixture_prices import fixture_book
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_optimizer.decoding import Decoder
from llm_optimizer.events import to_cloudevent
from simulator.samples import sample_events
from storage.events_repo import event_rows

CATALOG = fixture_book()
EVENTS = list(sample_events(50, seed=3))

ODD_VALUES = [
    None, -1, 0, 1.0, 1.5, -0.0, 12, 10**20, 1e300, 3_600_001, True, False, [], {}, ["a"], {"k": 1}, {"k": None},
    "", " ", "  padded  ", "bad name!", "x" * 200, "12", "1.0", "-3e5", "true", "{}", "[1]", "é", 'a"b', "a\\b",
    "tab\there", "line\nbreak", "nul\x00", "ok", "error", "canary", "Baseline",
    "2026-11-01T12:00:00", "2026-11-01T12:00:00Z", "2026-11-01T12:00:00+05:30", "2026-11-01T12:00:00.5-00:00",
    "2026-11-01 12:00:00Z", "2026-11-01T12:00:00.1234567Z", "2026-11-01T24:00:00Z", "2026-02-30T12:00:00Z",
    "2026-11-01T12:00:00+23:59", "2026-11-01T12:00:00+18:00", "2026-11-01t12:00:00z", "1700000000",
    # What Postgres cannot store or what is ambiguous (issue 19): both paths must refuse it alike.
    12345, 1.7e12, "0000-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59.999999Z", "a\x00b", {"k\x00": 1}, {"k": "v\x00"},
]  # fmt: skip
EVENT_FIELDS = [
    "event_id", "timestamp", "service", "endpoint", "model", "provider", "config_version", "variant", "latency_ms",
    "ttft_ms", "tokens_in", "tokens_out", "cost_usd", "status", "error_type", "quality_score", "user_feedback",
    "request_key", "request_text", "attributes", "surprise",
]  # fmt: skip
ENVELOPE_FIELDS = ["specversion", "id", "source", "type", "time", "subject", "datacontenttype", "x-extension"]


@st.composite
def messages(draw) -> bytes:
    base = EVENTS[draw(st.integers(0, len(EVENTS) - 1))]
    event = base.model_dump(mode="json", exclude_none=True)
    event["event_id"] = f"{base.event_id}-{draw(st.integers(0, 10**9))}"  # rows of one batch stay apart
    for name in draw(st.lists(st.sampled_from(EVENT_FIELDS), max_size=3, unique=True)):
        if draw(st.booleans()):
            event.pop(name, None)
        else:
            event[name] = draw(st.sampled_from(ODD_VALUES))
    shape = draw(st.sampled_from(["bare", "structured", "structured", "no-id-in-data", "string-data"]))
    if shape == "bare":
        document = event
    else:
        document = to_cloudevent(base)
        document["data"] = event
        if shape == "no-id-in-data":
            event.pop("event_id", None)
            event.pop("timestamp", None)
            document["id"] = f"{base.event_id}-envelope-{draw(st.integers(0, 10**9))}"
        elif shape == "string-data":
            document["data"] = json.dumps(event)
        for name in draw(st.lists(st.sampled_from(ENVELOPE_FIELDS), max_size=2, unique=True)):
            if draw(st.booleans()):
                document.pop(name, None)
            else:
                document[name] = draw(st.sampled_from(ODD_VALUES))
    compact = draw(st.booleans())
    text = json.dumps(document, separators=(",", ":") if compact else None, ensure_ascii=draw(st.booleans()))
    if draw(st.integers(0, 9)) == 0:  # a key given twice: the last one counts
        name = draw(st.sampled_from(["service", "latency_ms", "endpoint", "tokens_in"]))
        text = text[:-1] + f', "{name}": {json.dumps(draw(st.sampled_from(ODD_VALUES)))}' + "}"
    return text.encode()


def both_ways(values: list[bytes | None]):
    positions = [(f"t/0/{i}", v, []) for i, v in enumerate(values)]
    columnar = Decoder(CATALOG, source="kafka", max_message_bytes=4096, columnar_from=1).decode(positions)
    general = Decoder(CATALOG, source="kafka", max_message_bytes=4096, fast=False, columnar_from=None).decode(positions)
    return columnar, general


def assert_same_decisions(columnar, general) -> None:
    assert [(d.position, d.reason) for d in columnar.dead_letters] == [
        (d.position, d.reason) for d in general.dead_letters
    ]
    assert columnar.anomalies == general.anomalies
    rows = event_rows(columnar)
    expected = event_rows(general)
    assert rows.sort(rows.columns).equals(expected.sort(expected.columns)), (rows, expected)


@settings(max_examples=150, deadline=None)
@given(st.lists(messages(), min_size=1, max_size=40))
def test_the_columnar_path_and_the_general_path_agree(values):
    columnar, general = both_ways(values)
    assert_same_decisions(columnar, general)
    assert columnar.event_count + len(columnar.dead_letters) + len(columnar.anomalies) >= len(values)


def test_a_batch_polars_refuses_is_split_until_the_bad_messages_stand_alone():
    good = [json.dumps(to_cloudevent(e)).encode() for e in sample_events(300, seed=5)]
    values = list(good)
    values[17] = b'{"specversion": "1.0", "data": "not an object"}'
    values[201] = b'{"specversion": "1.0", "id": 5, "data": {"latency_ms": "slow"}}'
    values[250] = b"\xff\xfe not UTF-8"
    values[260] = None
    columnar, general = both_ways(values)
    assert_same_decisions(columnar, general)
    # The good ones went the columnar way but for the small groups left around the bad ones after splitting.
    assert columnar.rows.height + len(columnar.events) == 296
    assert columnar.rows.height >= 296 - 3 * 64
    assert columnar.rows["cost_usd"].null_count() == 0
    assert [d.position for d in columnar.dead_letters] == ["t/0/17", "t/0/201", "t/0/250", "t/0/260"]


def test_unusual_but_valid_messages_are_accepted_by_the_per_message_path():
    event = EVENTS[0].model_dump(mode="json")  # with nulls, which the columnar path leaves alone
    with_attributes = {**EVENTS[1].model_dump(mode="json", exclude_none=True), "attributes": {"region": "eu"}}
    columnar, general = both_ways([json.dumps(event).encode(), json.dumps(with_attributes).encode()])
    assert_same_decisions(columnar, general)
    assert columnar.rows.height == 0 and len(columnar.events) == 2


def test_rows_carry_the_same_timestamps_costs_and_defaults_as_events():
    event = EVENTS[2].model_dump(mode="json", exclude_none=True)
    event.pop("tokens_in")
    event["timestamp"] = "2026-11-01T12:00:00.25+05:30"
    event.pop("cost_usd", None)
    priced = {**event, "tokens_in": 7}
    columnar, general = both_ways([json.dumps(event).encode(), json.dumps(priced).encode()])
    assert_same_decisions(columnar, general)
    [row, priced_row] = columnar.rows.to_dicts()
    assert row["ts"].isoformat() == "2026-11-01T06:30:00.250000+00:00"
    # Usage not reported stays unknown, and so does the cost it would have made: never 0, never free.
    assert row["tokens_in"] is None and row["cost_usd"] is None
    assert row["status"] == "ok" and row["attributes"] == "{}"
    assert priced_row["cost_usd"] == CATALOG.price(event["model"]).cost(7, event["tokens_out"])
    assert pl.DataFrame([row]).columns == list(columnar.rows.columns)


def test_binary_mode_messages_take_the_per_message_path():
    envelope = to_cloudevent(EVENTS[3])
    headers = [(f"ce_{k}", str(v).encode()) for k, v in envelope.items() if k != "data"]
    value = json.dumps(envelope["data"]).encode()  # a bare event's body: only its headers make it binary mode
    batch = Decoder(CATALOG, source="kafka", max_message_bytes=4096, columnar_from=1).decode(
        [("t/0/0", value, headers), ("t/0/1", value, [])]
    )
    assert batch.rows.height == 1 and len(batch.events) == 1
    assert batch.events[0].event_id == batch.rows["event_id"][0] == EVENTS[3].event_id


def test_what_postgres_cannot_store_is_refused_alike_and_named():
    """Out-of-range instants (polars reads years 0 and 10000), NUL escapes, NaN and booleans in number fields."""
    base = EVENTS[4].model_dump(mode="json", exclude_none=True)
    cases = {
        "timestamp": ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0000-06-01T00:00:00Z", 12345],
        "endpoint": ["a\x00b"],
        "tokens_out": [True],
        "latency_ms": [False],
    }
    values = []
    for name, odd in cases.items():
        for value in odd:
            event = {**base, "event_id": f"odd-{len(values)}", name: value}
            values.append(json.dumps({**to_cloudevent(EVENTS[4]), "data": event}).encode())
    nan = json.dumps({**base, "event_id": "nan"}).replace('"latency_ms": ', '"latency_ms": NaN, "x": ')
    values.append(nan.encode())
    values.append(json.dumps({**base, "event_id": "fine", "timestamp": "0001-01-01T00:00:00Z"}).encode())
    columnar, general = both_ways(values)
    assert_same_decisions(columnar, general)
    assert event_rows(columnar)["event_id"].to_list() == ["fine"]
    reasons = [d.reason for d in columnar.dead_letters]
    assert len(reasons) == len(values) - 1
    assert "timestamp = '0001-01-01T00:00:00+01:00': Value error, outside 0001-01-01" in reasons[0]
    assert "timestamp = '9999-12-31T23:59:59-01:00'" in reasons[1]
    assert "timestamp = 12345: Value error, a bare number is ambiguous" in reasons[3]
    assert "endpoint = 'a\\x00b': Value error, contains a NUL character" in reasons[4]
    assert "tokens_out = True: Value error, a boolean is not a number" in reasons[5]
    assert "not valid JSON" in reasons[7]


def test_surrogate_escapes_are_decided_by_the_general_path():
    """polars reads a lone surrogate escape as NUL, which Postgres refuses; the general path refuses the JSON."""
    base = EVENTS[4].model_dump(mode="json", exclude_none=True)
    lone = json.dumps({**base, "event_id": "lone", "endpoint": "x"}).replace('"x"', '"\\ud800"')
    pair = json.dumps({**base, "event_id": "pair", "endpoint": "x"}).replace('"x"', '"\\ud83d\\ude42"')
    columnar, general = both_ways([lone.encode(), pair.encode()])
    assert_same_decisions(columnar, general)
    assert [d.position for d in columnar.dead_letters] == ["t/0/0"]
    assert columnar.rows.height == 0 and [e.endpoint for e in columnar.events] == ["\U0001f642"]
