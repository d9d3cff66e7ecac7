"""The data model rejects bad input with the field and the value named, and the catalog prices events."""

from __future__ import annotations

import json
import re

import orjson
import pytest
from helpers.fixture_prices import fixture_book

from llm_optimizer.configs import ConfigSpec, GenerationParams
from llm_optimizer.errors import ValidationFailed
from llm_optimizer.events import (
    LLM_REQUEST_EVENT_TYPE,
    CloudEvent,
    event_from_cloudevent,
    parse_event,
    to_cloudevent,
)
from llm_optimizer.pricing import PriceBook

GOOD = {
    "event_id": "e-1",
    "timestamp": "2026-11-01T12:00:00+00:00",
    "service": "chat",
    "model": "gpt-4o-mini",
    "provider": "openai",
    "latency_ms": 420,
    "tokens_in": 1000,
    "tokens_out": 500,
}


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("latency_ms", -1, "greater than or equal to 0"),
        ("latency_ms", float("nan"), "finite"),
        ("latency_ms", float("inf"), "finite"),
        ("latency_ms", 7_200_000, "less than or equal"),
        ("tokens_in", -5, "greater than or equal to 0"),
        ("cost_usd", -0.01, "greater than or equal to 0"),
        ("quality_score", 1.5, "less than or equal to 1"),
        ("timestamp", "2026-11-01T12:00:00", "timezone"),
        ("status", "exploded", "'ok'"),
        ("variant", "purple", "'baseline'"),
        ("service", "x" * 129, "at most 128"),
        ("service", "", "at least 1"),
        ("service", "bad name!", "pattern"),
        ("surprise", 1, "Extra inputs"),
    ],
)
def test_bad_values_are_refused_naming_field_and_value(field, value, says):
    with pytest.raises(ValidationFailed) as err:
        parse_event({**GOOD, field: value})
    assert err.value.field == field
    message = str(err.value)
    assert message.startswith(f"{field} = ")
    assert says in message
    if isinstance(value, int | float) and value == value:  # NaN is shown as nan
        assert repr(value)[:20] in message


def test_inconsistent_events_are_refused():
    with pytest.raises(ValidationFailed, match="ttft_ms"):
        parse_event({**GOOD, "ttft_ms": 500})
    with pytest.raises(ValidationFailed, match="error_type"):
        parse_event({**GOOD, "error_type": "rate_limit"})
    with pytest.raises(ValidationFailed, match="at most 64 attributes"):
        parse_event({**GOOD, "attributes": {f"k{i}": i for i in range(65)}})


def test_json_text_is_parsed_like_a_dict():
    assert parse_event(json.dumps(GOOD)) == parse_event(GOOD)
    with pytest.raises(ValidationFailed, match="Invalid JSON"):
        parse_event(b"{not json")


def test_cloudevent_round_trip_fills_id_and_time_from_the_envelope():
    event = parse_event(GOOD)
    envelope = to_cloudevent(event)
    assert envelope["type"] == LLM_REQUEST_EVENT_TYPE
    assert event_from_cloudevent(CloudEvent.model_validate(envelope)) == event

    data = {k: v for k, v in GOOD.items() if k not in ("event_id", "timestamp")}
    bare = CloudEvent.model_validate(
        {**envelope, "id": "ce-9", "time": "2026-11-01T13:00:00Z", "data": json.dumps(data)}
    )
    inner = event_from_cloudevent(bare)
    assert inner.event_id == "ce-9"
    assert inner.timestamp.hour == 13


def test_cloudevent_of_another_type_is_refused():
    envelope = {**to_cloudevent(parse_event(GOOD)), "type": "com.example.other"}
    with pytest.raises(ValidationFailed, match=r"com\.example\.other"):
        event_from_cloudevent(CloudEvent.model_validate(envelope))


def test_catalog_prices_events_without_cost_and_keeps_reported_cost():
    catalog = fixture_book()
    event = parse_event(GOOD)  # gpt-4o-mini: $0.15 in / $0.60 out per 1M
    assert catalog.with_cost(event).cost_usd == pytest.approx((1000 * 0.15 + 500 * 0.60) / 1e6)
    reported = parse_event({**GOOD, "cost_usd": 0.5})
    assert catalog.with_cost(reported).cost_usd == 0.5
    unknown = parse_event({**GOOD, "model": "in-house-model"})
    assert catalog.with_cost(unknown).cost_usd is None


def test_the_default_prices_cover_the_models_of_the_shared_outcomes():
    catalog = PriceBook()  # what the product uses with no price file: genai-prices
    for model in [
        "gpt-4-1106-preview",
        "mixtral-8x7b-instruct-v0.1",
        "claude-3-haiku-20240307",
        "gemini-2.0-flash-001",
    ]:
        assert catalog.price(model) is not None, model


def test_config_fingerprint_is_stable_and_content_sensitive():
    spec = ConfigSpec(model="gpt-4o", provider="openai", params=GenerationParams(temperature=0.2))
    same = ConfigSpec.model_validate(json.loads(spec.model_dump_json()))
    other = ConfigSpec(model="gpt-4o", provider="openai", params=GenerationParams(temperature=0.3))
    assert spec.fingerprint() == same.fingerprint() != other.fingerprint()


# ---- nothing Postgres would refuse is accepted; ambiguous input is refused, not guessed (issue 19) ----


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("endpoint", "a\x00b", "NUL character"),
        ("event_id", "e-1\x00", "NUL character"),
        ("request_text", "hello\x00", "NUL character"),
        ("error_type", "\x00", "NUL character"),
        ("timestamp", 12345, "a bare number is ambiguous"),
        ("timestamp", 1.7e12, "a bare number is ambiguous"),
        ("timestamp", "1700000000", "a bare number is ambiguous"),
        ("timestamp", " 1.7e9 ", "a bare number is ambiguous"),
        ("timestamp", "0001-01-01T00:00:00+01:00", "outside 0001-01-01 .. 9999-12-31 once converted to UTC"),
        ("timestamp", "9999-12-31T23:59:59-00:30", "outside 0001-01-01 .. 9999-12-31 once converted to UTC"),
        ("tokens_out", True, "a boolean is not a number"),
        ("tokens_in", False, "a boolean is not a number"),
        ("latency_ms", True, "a boolean is not a number"),
        ("cost_usd", True, "a boolean is not a number"),
        ("quality_score", True, "a boolean is not a number"),
        ("user_feedback", False, "a boolean is not a number"),
    ],
)
def test_what_postgres_cannot_store_or_what_is_ambiguous_is_refused_by_name(field, value, says):
    for document in ({**GOOD, field: value}, json.dumps({**GOOD, field: value})):  # both pydantic modes
        if field == "error_type":
            document = {**GOOD, field: value, "status": "error"}
        with pytest.raises(ValidationFailed) as err:
            parse_event(document)
        assert err.value.field == field
        assert str(err.value).startswith(f"{field} = {value!r}"), str(err.value)
        assert says in str(err.value)


@pytest.mark.parametrize(
    ("attributes", "says"),
    [
        ({"region": "eu\x00"}, "attributes['region'] = 'eu\\x00': contains a NUL character"),
        ({"re\x00gion": "eu"}, "attributes key 're\\x00gion': contains a NUL character"),
        ({"ratio": float("nan")}, "attributes['ratio'] = nan: not a finite number"),
        ({"ratio": float("-inf")}, "attributes['ratio'] = -inf: not a finite number"),
    ],
)
def test_attributes_postgres_cannot_store_are_refused_naming_the_key(attributes, says):
    with pytest.raises(ValidationFailed) as err:
        parse_event({**GOOD, "attributes": attributes})
    assert err.value.field == "attributes"
    assert says in str(err.value)


def test_nan_and_infinity_in_json_text_are_refused_too():
    """pydantic's JSON reader takes NaN and Infinity (orjson does not): the one-pass parse must refuse them."""
    text = json.dumps({**GOOD, "attributes": {"a": 1}}).replace('"a": 1', '"a": NaN')
    with pytest.raises(ValidationFailed, match=r"attributes\['a'\] = nan: not a finite number"):
        parse_event(text)
    with pytest.raises(ValidationFailed, match="latency_ms = inf"):
        parse_event(json.dumps(GOOD).replace("420", "Infinity"))


def test_the_edges_of_the_range_and_numeric_text_still_pass():
    assert parse_event({**GOOD, "timestamp": "0001-01-01T00:00:00Z"}).timestamp.year == 1
    assert parse_event({**GOOD, "timestamp": "9999-12-31T23:59:59.999999+00:00"}).timestamp.year == 9999
    # Numbers as text are not ambiguous (a CSV backfill sends nothing else): they stay accepted.
    assert parse_event({**GOOD, "tokens_out": "7", "latency_ms": "1.5"}).tokens_out == 7
    assert parse_event({**GOOD, "attributes": {"flag": True, "n": 10**30, "t": "x"}}).attributes["flag"] is True


def test_a_cloudevent_time_follows_the_timestamp_rules():
    envelope = to_cloudevent(parse_event(GOOD))
    for time, says in ((1_700_000_000, "bare number"), ("0001-01-01T00:00:00+00:01", "outside")):
        with pytest.raises(Exception, match=says):
            CloudEvent.model_validate({**envelope, "time": time})


def test_a_dead_letter_can_always_be_stored():
    from llm_optimizer.events import MAX_POSITION, DeadLetter, DeadLetterCode

    code = DeadLetterCode.invalid_event
    dead = DeadLetter(source="http", position="p\x00" + "x" * 2000, code=code, reason="why \x00 \ud800", raw=b"\x00")
    assert "\x00" not in dead.position + dead.reason
    dead.reason.encode("utf-8")  # no unpaired surrogate left
    assert len(dead.position) == MAX_POSITION
    other = DeadLetter(source="http", position="p\x00" + "x" * 1999 + "y", code=code, reason="r", raw=b"")
    assert other.position != dead.position  # a long position keeps a digest of the whole
    assert DeadLetter(source="kafka", position="t/0/1", code=code, reason="r", raw=b"").position == "t/0/1"


# ---- the one-pass validator (events.one_pass_event) accepts only what LLMEvent accepts, as the same event ----


def test_the_one_pass_validator_has_the_fields_of_the_event():
    from llm_optimizer.events import LLMEvent, _OnePassEvent

    def fields(model):
        return {
            name: (info.is_required(), info.default, info.default_factory) for name, info in model.model_fields.items()
        }

    assert fields(_OnePassEvent) == fields(LLMEvent)
    assert _OnePassEvent.model_config == LLMEvent.model_config


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_id", "e-1\x00"),
        ("endpoint", "a\x00b"),
        ("request_key", " \x00"),
        ("attributes", {"k\x00": 1}),
        ("attributes", {"k": "v\x00"}),
        ("attributes", {"k": float("nan")}),
        ("attributes", {"k": float("-inf")}),
        ("attributes", {f"k{i}": i for i in range(65)}),
        ("latency_ms", True),
        ("tokens_in", False),
        ("user_feedback", True),
        ("latency_ms", "1.5"),  # accepted by LLMEvent, but not the one-pass way
        ("tokens_out", "7"),
        ("tokens_out", 7.0),
        ("timestamp", 12345),
        ("timestamp", "1700000000"),
        ("timestamp", "+1700000000.5"),
        ("timestamp", ".5"),
        ("timestamp", " 2026-11-01T12:00:00Z"),
        ("timestamp", "0001-01-01T00:00:00+01:00"),
        ("timestamp", "0001-01-01T00:00:00Z"),
        ("timestamp", "9999-12-31T23:59:59-00:30"),
        ("timestamp", "9999-12-31T23:59:59.999999Z"),
    ],
)
def test_the_one_pass_validator_leaves_to_the_event_model_what_it_is_not_sure_of(field, value):
    from llm_optimizer.events import one_pass_event

    document = {**GOOD, field: value}
    assert one_pass_event(json.dumps(document).encode()) is None
    envelope = to_cloudevent(parse_event(GOOD))
    assert one_pass_event(json.dumps({**envelope, "data": document}).encode()) is None
    if field == "timestamp":
        assert one_pass_event(json.dumps({**envelope, "time": value}).encode()) is None


def test_the_one_pass_instants_are_those_of_years_2_to_9998():
    from llm_optimizer.events import _ONE_PASS_INSTANT_TEXT

    taken = [year for year in range(10_000) if re.match(_ONE_PASS_INSTANT_TEXT, f"{year:04d}-01-01T00:00:00Z")]
    assert taken == list(range(2, 9999))
    assert not re.match(_ONE_PASS_INSTANT_TEXT, "12345-01-01T00:00:00Z")


def test_what_the_one_pass_validator_accepts_is_the_event_the_model_makes():
    from llm_optimizer.events import LLMEvent, one_pass_event

    documents = [
        GOOD,
        {**GOOD, "timestamp": "0002-01-01T00:00:00+23:59", "ttft_ms": 0, "cost_usd": 1, "user_feedback": -1},
        {**GOOD, "timestamp": "9998-12-31T23:59:59.1234567-23:59", "status": "error", "error_type": " boom "},
        {**GOOD, "endpoint": " /v1 ", "request_text": "é\n", "attributes": {"a": "b", "f": True, "n": 10**30}},
        {**GOOD, "attributes": {"x": 1.5, "i": 2**64 - 1, "j": -(2**63), "none": None}},
    ]
    for document in documents:
        text = json.dumps(document).encode()
        for raw in (text, json.dumps({**to_cloudevent(parse_event(GOOD)), "data": document}).encode()):
            event = one_pass_event(raw)
            assert type(event) is LLMEvent
            expected = parse_event(orjson.loads(text))  # as the general path reads it (ingest.Decoder)
            assert event == expected
            assert event.model_fields_set == expected.model_fields_set
