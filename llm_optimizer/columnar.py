"""Columnar decoding: a batch of messages of the common shapes validated at once, with polars, into table rows.

The per-message path (`ingest.Decoder` with pydantic) costs ~13 µs a message, most of ingestion's CPU. Here a batch
is parsed by polars' JSON reader and checked with column expressions that apply the `LLMEvent` and `CloudEvent`
rules to the shapes they accept: structured CloudEvents and bare events without nulls, extension attributes,
attributes or texts, whose fields hold their plain JSON types. Every other message (tombstones, binary mode,
unusual timestamps, anything invalid...) is handed back to the per-message path, which accepts it or
dead-letters it with the reason. `tests/unit/test_columnar.py` holds the two paths to one result on generated input.

How a column tells what JSON held: polars refuses a batch where a number or object field holds another JSON type
(the batch is then split); a string field takes any value as text, so a string that reads like another JSON value
goes the per-message way; a key this path does not know leaves more quotes in the message than its known fields
account for (two per key, two per string value), as does a key given twice.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime

import polars as pl

from llm_optimizer.events import LLM_REQUEST_EVENT_TYPE, MAX_COST_USD, MAX_LATENCY_MS, MAX_TOKENS, Status, Variant
from llm_optimizer.pricing import Prices

# The events table's columns (but `source`, which the lander adds), in order, with their types.
ROW_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.String(),
    "ts": pl.Datetime("us", "UTC"),
    "service": pl.String(),
    "endpoint": pl.String(),
    "model": pl.String(),
    "provider": pl.String(),
    "config_version": pl.String(),
    "variant": pl.String(),
    "latency_ms": pl.Float64(),
    "ttft_ms": pl.Float64(),
    "tokens_in": pl.Int64(),
    "tokens_out": pl.Int64(),
    "cost_usd": pl.Float64(),
    "status": pl.String(),
    "error_type": pl.String(),
    "quality_score": pl.Float64(),
    "user_feedback": pl.Float64(),
    "request_key": pl.String(),
    "attributes": pl.String(),  # JSON text
}

_S, _F, _I = pl.String(), pl.Float64(), pl.Int64()
_EVENT_FIELDS: dict[str, pl.DataType] = {
    "event_id": _S,
    "timestamp": _S,
    "service": _S,
    "endpoint": _S,
    "model": _S,
    "provider": _S,
    "config_version": _S,
    "variant": _S,
    "latency_ms": _F,
    "ttft_ms": _F,
    "tokens_in": _I,
    "tokens_out": _I,
    "cost_usd": _F,
    "status": _S,
    "error_type": _S,
    "quality_score": _F,
    "user_feedback": _F,
    "request_key": _S,
    "request_text": _S,
    "response_text": _S,
    "reference_text": _S,
    "attributes": pl.Struct({}),  # only `{}` is taken here: a key inside adds quotes
}
_ENVELOPE_FIELDS = ("specversion", "id", "source", "type", "time", "datacontenttype", "dataschema", "subject")
_STRUCTURED = {**dict.fromkeys(_ENVELOPE_FIELDS, _S), "data": pl.Struct(_EVENT_FIELDS)}
_EVENT_STRINGS = [name for name, dtype in _EVENT_FIELDS.items() if dtype == _S]
_ENVELOPE_STRINGS = [f"ce_{name}" for name in _ENVELOPE_FIELDS]
# Free strings stored as pydantic leaves them: stripped (error_type is stripped where it is checked too).
_STRIPPED_AS_STORED = ("event_id", "service", "endpoint", "model", "provider", "config_version", "request_key")

# What polars makes of a number, boolean, array or object read into a string field.
_OTHER_JSON_AS_TEXT = r"^(-?[0-9][0-9.]*([eE][+-]?[0-9]+)?|true|false|\[.*|\{.*)$"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$"  # events.Name
# The RFC 3339 timestamps pydantic and polars read alike; any other form goes the per-message way.
_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?(Z|[+-](0\d|1[0-7]):[0-5]\d)$"

# Bytes that send a message the per-message way unparsed: a null (absent and null look alike in a column), an
# escaped quote (quotes would no longer come two per string), a NUL escape (Postgres text cannot hold one), a
# surrogate escape (polars reads a lone one as NUL where the general path refuses the JSON; valid pairs go that way
# too, rarely), line breaks (the reader splits lines).
_UNSURE = (b"null", b'\\"', b"\\u0000", b"\\ud", b"\\uD", b"\n", b"\r")
_BISECT_BELOW = 64  # a group polars refuses is split in halves; below this size its messages go one by one
_EMPTY = pl.DataFrame(schema={**ROW_SCHEMA, "_i": pl.UInt32()})
# The instants `events.Instant` accepts, in UTC (polars reads years 0 and 10000 that Python and Postgres refuse).
_FIRST_INSTANT = datetime(1, 1, 1, tzinfo=UTC)
_LAST_INSTANT = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


def decode_rows(
    values: Sequence[bytes | None], catalog: Prices, *, max_message_bytes: int
) -> tuple[pl.DataFrame, list[int], list[int]]:
    """Rows (`ROW_SCHEMA`) of the messages this path is sure of, the index in `values` of each row's message (so
    that a row Postgres refuses can still be dead-lettered as its message), and the indexes of the others, in
    order."""
    value = pl.col("value")
    sorted_out = (
        pl.DataFrame({"value": pl.Series(values, dtype=pl.Binary)})
        .with_row_index("_i")
        .select(
            "_i",
            _sure=(
                value.bin.size().is_between(1, max_message_bytes)
                & ~pl.any_horizontal(value.bin.contains(pattern) for pattern in _UNSURE)
            ).fill_null(False),  # a tombstone
            # A bare event has no `specversion`; one that names it in a string goes the per-message way.
            _structured=value.bin.contains(b'"specversion"'),
        )
    )
    sure = pl.col("_sure")
    rest = sorted_out.filter(~sure)["_i"].to_list()
    frames = []
    for structured in (True, False):
        group = sorted_out.filter(sure & (pl.col("_structured") == structured)).select("_i")
        frame, refused = _decode_group(values, group, structured)
        frames.append(frame)
        rest.extend(refused)
    rows = pl.concat(frames)
    if rows.height + len(rest) != len(values):  # every message is a row or handed back, never dropped
        raise AssertionError(f"columnar decoding lost messages: {rows.height} rows + {len(rest)} of {len(values)}")
    return _with_cost(rows.drop("_i"), catalog), rows["_i"].to_list(), sorted(rest)


def _decode_group(values: Sequence[bytes | None], group: pl.DataFrame, structured: bool) -> tuple[pl.DataFrame, list]:
    """The rows of the messages of `group` (`_i`: their indexes in `values`) and the indexes of those refused."""
    if group.is_empty():
        return _EMPTY, []
    indexes = group["_i"].to_list()
    try:
        parsed = pl.read_ndjson(
            io.BytesIO(b"\n".join(values[i] for i in indexes)),
            schema=_STRUCTURED if structured else _EVENT_FIELDS,
        )
    except (pl.exceptions.PolarsError, ValueError):
        if len(indexes) < _BISECT_BELOW:
            return _EMPTY, indexes
        half = len(indexes) // 2
        first, refused_first = _decode_group(values, group.head(half), structured)
        second, refused_second = _decode_group(values, group.slice(half), structured)
        return pl.concat([first, second]), refused_first + refused_second
    quotes = pl.Series("_quotes", [values[i].count(b'"') for i in indexes])
    checked = _checked(parsed.with_columns(group["_i"], quotes), structured)
    refused = checked.filter(~pl.col("_ok"))["_i"].to_list()
    return checked.filter(pl.col("_ok")).select(*ROW_SCHEMA, "_i"), refused


def _checked(frame: pl.DataFrame, structured: bool) -> pl.DataFrame:
    """`ROW_SCHEMA` columns and `_ok`: true where the message is an event the per-message path would accept as is."""
    c = pl.col
    if structured:
        envelope = [c(name).alias(f"ce_{name}") for name in _ENVELOPE_FIELDS]
        frame = frame.select("_i", "_quotes", *envelope, c("data").struct.unnest(), _has_data=c("data").is_not_null())
        strings = [*_ENVELOPE_STRINGS, *_EVENT_STRINGS]
        # Quotes the known fields account for: the envelope's keys, `data`, the event's keys, the string values.
        quotes = 2 * (_count_present([*_ENVELOPE_STRINGS, *_EVENT_FIELDS]) + 1 + _count_present(strings))
        envelope_ok = (
            c("_has_data")
            & (c("ce_specversion") == "1.0")
            & _text(c("ce_id"), 1, 256)
            & _text(c("ce_source"), 1, 1024)
            & (c("ce_type").str.strip_chars() == LLM_REQUEST_EVENT_TYPE)
            & (c("ce_time").is_null() | _in_range(_timestamp(c("ce_time"))))
        )
        # The envelope's id and time stand in for the event's when it has none (events.event_from_cloudevent).
        frame = frame.with_columns(
            _expected_quotes=quotes,
            _envelope_ok=envelope_ok,
            # `specversion` must read "1.0", which polars writes no number as (1.0 becomes "1").
            _plain=_plain_strings([name for name in strings if name != "ce_specversion"]),
            event_id=pl.coalesce("event_id", "ce_id"),
            timestamp=pl.coalesce("timestamp", "ce_time"),
        )
    else:
        quotes = 2 * (_count_present(list(_EVENT_FIELDS)) + _count_present(_EVENT_STRINGS))
        frame = frame.with_columns(_expected_quotes=quotes, _envelope_ok=True, _plain=_plain_strings(_EVENT_STRINGS))
    ts = _timestamp(c("timestamp"))
    status = c("status").fill_null(Status.ok.value)
    error_type = c("error_type").str.strip_chars()
    ttft, latency = c("ttft_ms"), c("latency_ms")
    ok = (
        c("_envelope_ok")
        & c("_plain")
        & (c("_quotes") == c("_expected_quotes"))
        & _text(c("event_id"), 1, 128)
        & _in_range(ts)
        & _name(c("service"))
        & _name(c("model"))
        & _name(c("provider"))
        & (c("config_version").is_null() | _name(c("config_version")))
        & _optional_text(c("endpoint"), 256)
        & _optional_text(c("error_type"), 256)
        & _optional_text(c("request_key"), 256)
        & (c("variant").is_null() | c("variant").is_in([v.value for v in Variant]))
        & status.is_in([s.value for s in Status])
        & _within(latency, 0, MAX_LATENCY_MS, required=True)
        & _within(ttft, 0, MAX_LATENCY_MS)
        & _within(c("tokens_in"), 0, MAX_TOKENS)
        & _within(c("tokens_out"), 0, MAX_TOKENS)
        & _within(c("cost_usd"), 0, MAX_COST_USD)
        & _within(c("quality_score"), 0, 1)
        & _within(c("user_feedback"), -1, 1)
        & (ttft.is_null() | (ttft <= latency))
        & ((status != Status.ok.value) | error_type.is_null())
        & c("request_text").is_null()
        & c("response_text").is_null()
        & c("reference_text").is_null()
    ).fill_null(False)
    stripped = {name: c(name).str.strip_chars() for name in _STRIPPED_AS_STORED}
    return frame.select(
        "_i",
        _ok=ok,
        **stripped,
        ts=ts,
        variant=c("variant"),
        latency_ms=latency,
        ttft_ms=ttft,
        tokens_in=c("tokens_in"),  # absent stays null (unknown), as in `LLMEvent`
        tokens_out=c("tokens_out"),
        cost_usd=c("cost_usd"),
        status=status,
        error_type=error_type,
        quality_score=c("quality_score"),
        user_feedback=c("user_feedback"),
        attributes=pl.lit("{}"),
    )


def _plain_strings(names: list[str]) -> pl.Expr:
    """No string field holds text that may have been another JSON value."""
    return ~pl.any_horizontal(pl.col(name).str.contains(_OTHER_JSON_AS_TEXT).fill_null(False) for name in names)


def _count_present(names: list[str]) -> pl.Expr:
    return pl.sum_horizontal(pl.col(name).is_not_null().cast(pl.Int32) for name in names)


def _timestamp(text: pl.Expr) -> pl.Expr:
    """The instant of an RFC 3339 timestamp of the accepted form, else null."""
    parsed = text.str.replace(r"Z$", "+00:00").str.to_datetime(
        "%Y-%m-%dT%H:%M:%S%.f%:z", time_zone="UTC", time_unit="us", strict=False
    )
    return pl.when(text.str.contains(_TIMESTAMP)).then(parsed)


def _in_range(instant: pl.Expr) -> pl.Expr:
    return instant.is_between(pl.lit(_FIRST_INSTANT), pl.lit(_LAST_INSTANT))


def _text(text: pl.Expr, shortest: int, longest: int) -> pl.Expr:
    """pydantic's rule for the project's strings: whitespace stripped first, then the length in characters."""
    return text.str.strip_chars().str.len_chars().is_between(shortest, longest)


def _optional_text(text: pl.Expr, longest: int) -> pl.Expr:
    return text.is_null() | _text(text, 1, longest)


def _name(text: pl.Expr) -> pl.Expr:
    stripped = text.str.strip_chars()
    return _text(text, 1, 128) & stripped.str.contains(_NAME)


def _within(number: pl.Expr, low: float, high: float, *, required: bool = False) -> pl.Expr:
    inside = number.is_between(low, high)
    return inside if required else number.is_null() | inside


def _with_cost(rows: pl.DataFrame, catalog: Prices) -> pl.DataFrame:
    """`cost_usd` where the event has none, its model can be priced and both token counts are known (a null count
    makes the sum null, as `PricingCatalog.fill_cost` leaves it), rounded as `ModelPrice.cost`."""
    if rows.is_empty():
        return rows
    # The prices of the models this batch needs, asked one by one: a price book cannot list every name it prices.
    needed = rows.filter(pl.col("cost_usd").is_null())["model"].unique().to_list()
    known = [(model, price) for model in needed if (price := catalog.price(model)) is not None]
    prices = pl.DataFrame(
        {
            "model": [model for model, _ in known],
            "_in": [p.input_per_1m for _, p in known],
            "_out": [p.output_per_1m for _, p in known],
            "_request": [p.per_request or 0.0 for _, p in known],
        },
        schema={"model": pl.String(), "_in": pl.Float64(), "_out": pl.Float64(), "_request": pl.Float64()},
    )
    priced = rows.join(prices, on="model", how="left", maintain_order="left")
    # Each operation in its own step, and the division in numpy: polars fuses `a * b + c * d` into a multiply-add
    # and divides through the reciprocal (by a constant, and by a column whose values the join broadcast from one
    # price), and either rounds differently from ModelPrice.cost.
    priced = priced.with_columns(_in=pl.col("tokens_in") * pl.col("_in"), _out=pl.col("tokens_out") * pl.col("_out"))
    summed = priced.select(pl.col("_in") + pl.col("_out")).to_series().to_numpy()
    priced = priced.with_columns(pl.Series("_tokens", summed / 1_000_000, nan_to_null=True))  # unpriced: NaN, null
    listed = pl.col("_tokens") + pl.col("_request")  # + 0.0 where there is no per-request price: the same float
    return priced.with_columns(cost_usd=pl.coalesce("cost_usd", listed)).select(*ROW_SCHEMA)
