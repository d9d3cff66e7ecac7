"""Decoding raw messages (Kafka records, file lines, HTTP bodies) into events, anomalies or dead letters.

Pure functions: every input ends up as exactly one of the three, never silently dropped.
Accepted formats: CloudEvents 1.0 structured mode (JSON with `specversion`), CloudEvents binary mode (`ce_*`
headers, the event JSON as the body), and the bare event JSON.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, overload

import orjson
import polars as pl
from pydantic import ValidationError

from llm_optimizer.columnar import ROW_SCHEMA, decode_rows
from llm_optimizer.errors import Undecodable, ValidationFailed
from llm_optimizer.events import (
    SENTINEL_ANOMALY_EVENT_TYPE,
    AnomalyAlert,
    CloudEvent,
    DeadLetter,
    DeadLetterCode,
    LLMEvent,
    dead_letter_code,
    describe_validation_error,
    event_from_cloudevent,
    one_pass_event,
    parse_event,
    storable_problem,
)
from llm_optimizer.pricing import Prices

Headers = Sequence[tuple[str, bytes]]


@dataclass(frozen=True)
class Anomaly:
    """A Sentinel alert about one service (an alert naming several services becomes several anomalies)."""

    anomaly_id: str
    service: str
    detected_at: datetime
    alert: AnomalyAlert


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an accepted event or anomaly came from, so that it can still be dead-lettered if Postgres refuses it
    (see `storage.events_repo.land`). `raw` may be a function, for inputs whose bytes cost something to make.
    `index` is its place in the request that carried it, for inputs that came as a list (an HTTP batch)."""

    position: str
    raw: bytes | Callable[[], bytes]
    index: int | None = None

    def raw_bytes(self) -> bytes:
        return self.raw() if callable(self.raw) else self.raw


class Origins(Sequence[Origin]):
    """The origins of a batch's items, each made an `Origin` only when asked for (when Postgres refuses its item).
    Held as two lists of positions and raws: an `Origin` and a function per item, kept for the batch's life, made
    the garbage collector's passes over a batch of 20,000 cost about 5 µs a message (docs/benchmarks.md)."""

    __slots__ = ("_indices", "_positions", "_raws")

    def __init__(self, positions: list[str] | None = None, raws: list[bytes | Callable[[], bytes]] | None = None):
        self._positions = [] if positions is None else positions
        self._raws = [] if raws is None else raws
        if len(self._positions) != len(self._raws):
            raise ValueError(f"{len(self._positions)} positions but {len(self._raws)} raws")
        self._indices: dict[int, int] = {}  # item -> `Origin.index`, for the items that have one

    def add(self, position: str, raw: bytes | Callable[[], bytes], index: int | None = None) -> None:
        if index is not None:
            self._indices[len(self._positions)] = index
        self._positions.append(position)
        self._raws.append(raw)

    def __len__(self) -> int:
        return len(self._positions)

    @overload
    def __getitem__(self, index: int) -> Origin: ...

    @overload
    def __getitem__(self, index: slice) -> list[Origin]: ...

    def __getitem__(self, index: int | slice) -> Origin | list[Origin]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return Origin(self._positions[index], self._raws[index], self._indices.get(index))


@dataclass
class DecodedBatch:
    """Accepted events come either as table rows (the columnar path) or as `LLMEvent`s (the per-message one).

    `row_origins`, `event_origins` and `anomaly_origins` run alongside `rows`, `events` and `anomalies` (empty when
    the batch was made without them: its items are then named by their ids if Postgres refuses one)."""

    events: list[LLMEvent] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    rows: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=ROW_SCHEMA))
    row_origins: Origins = field(default_factory=Origins)
    event_origins: Origins = field(default_factory=Origins)
    anomaly_origins: Origins = field(default_factory=Origins)

    @property
    def event_count(self) -> int:
        return self.rows.height + len(self.events)


class Decoder:
    """Turns raw messages into a `DecodedBatch`, costing events from the catalog when they carry no cost."""

    def __init__(
        self,
        catalog: Prices,
        *,
        source: str,
        max_message_bytes: int,
        fast: bool = True,
        columnar_from: int | None = 64,
    ):
        self.catalog = catalog
        self.source = source
        self.max_message_bytes = max_message_bytes
        # Faster ways tried first, each held by a test to decide as the general path does: the one-pass parse of a
        # message, and the columnar decoding of batches of at least `columnar_from` messages (None: never).
        self.fast = fast
        self.columnar_from = columnar_from

    def decode(self, messages: Iterable[tuple[str, bytes | None, Headers]]) -> DecodedBatch:
        """`messages` are (position, value, headers); position names where the message came from."""
        batch = DecodedBatch()
        messages = list(messages)
        if self.columnar_from is not None and len(messages) >= self.columnar_from:
            # Binary-mode messages are left to the per-message path (as a None value, like a tombstone).
            values = [None if _ce_headers(headers) else value for _, value, headers in messages]
            batch.rows, taken, others = decode_rows(values, self.catalog, max_message_bytes=self.max_message_bytes)
            batch.row_origins = Origins([messages[i][0] for i in taken], [values[i] or b"" for i in taken])
            messages = [messages[i] for i in others]
        # No function or object per message beyond what it decodes to (see `Origins`): the raw is the bytes.
        for position, value, headers in messages:
            try:
                decoded: LLMEvent | list[Anomaly] | ValidationFailed = self._decode_one(value, headers)
            except ValidationFailed as exc:
                decoded = exc
            self._add(batch, position, decoded, value or b"")
        return batch

    def decode_documents(self, documents: Iterable[tuple[str, Any]]) -> DecodedBatch:
        """Already parsed JSON documents (an HTTP batch): each a bare event or a CloudEvent, at `position`. Each
        dead letter, here or Postgres's, carries its document's index in `documents`."""
        batch = DecodedBatch()
        for index, (position, document) in enumerate(documents):
            try:
                decoded: LLMEvent | list[Anomaly] | ValidationFailed = _from_document(document)
            except ValidationFailed as exc:
                decoded = exc
            self._add(batch, position, decoded, functools.partial(_raw_json, document), index)
        return batch

    def _add(
        self,
        batch: DecodedBatch,
        position: str,
        decoded: LLMEvent | list[Anomaly] | ValidationFailed,
        raw: bytes | Callable[[], bytes],
        index: int | None = None,
    ) -> None:
        if isinstance(decoded, ValidationFailed):
            raw = raw() if callable(raw) else raw
            code, reason = dead_letter_code(decoded), str(decoded)
            batch.dead_letters.append(
                DeadLetter(source=self.source, position=position, index=index, code=code, reason=reason, raw=raw)
            )
        elif isinstance(decoded, LLMEvent):
            batch.events.append(self.catalog.fill_cost(decoded))
            batch.event_origins.add(position, raw, index)
        else:
            batch.anomalies.extend(decoded)
            for _ in decoded:
                batch.anomaly_origins.add(position, raw, index)

    def _decode_one(self, value: bytes | None, headers: Headers) -> LLMEvent | list[Anomaly]:
        if value is None:
            raise Undecodable(DeadLetterCode.no_body, "message has no body (a tombstone)")
        if len(value) > self.max_message_bytes:
            raise Undecodable(
                DeadLetterCode.too_large,
                f"message of {len(value)} bytes is larger than kafka.max_message_bytes ({self.max_message_bytes})",
            )
        ce_headers = _ce_headers(headers)
        if ce_headers:
            return _from_binary_mode(ce_headers, value)
        if self.fast:
            event = _one_pass(value)
            if event is not None:
                return event
        return _from_document(_parse_json(value))


def _ce_headers(headers: Headers) -> dict[str, bytes]:
    """The CloudEvents attributes of a binary-mode message, by name; empty for any other message."""
    return {k[3:]: v for k, v in headers if k.startswith("ce_")}


def _from_document(document: Any) -> LLMEvent | list[Anomaly]:
    if not isinstance(document, dict):
        raise Undecodable(DeadLetterCode.not_an_object, f"body is a JSON {type(document).__name__}, expected an object")
    if "specversion" in document:
        return _from_envelope(document)
    return parse_event(document)


def _raw_json(document: Any) -> bytes:
    return json.dumps(document, default=str).encode()


# The common cases, validated by pydantic straight from the bytes (several times faster than parsing JSON and then
# validating envelope and event); None for anything else (an event id or time only on the envelope, data as a
# string, a Sentinel alert, any invalid input), which the general path then decodes or refuses with the reason.
_one_pass = one_pass_event


def _parse_json(value: bytes) -> Any:
    """orjson (several times faster than json, which made parsing a third of decoding), with the reason named."""
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise Undecodable(
                DeadLetterCode.not_utf8, f"body is not UTF-8 text ({bad.reason} at byte {bad.start})"
            ) from None
        raise Undecodable(DeadLetterCode.not_json, f"body is not valid JSON ({exc})") from None


def _from_binary_mode(ce_headers: dict[str, bytes], value: bytes) -> LLMEvent | list[Anomaly]:
    try:
        attributes = {k: v.decode("utf-8") for k, v in ce_headers.items()}
    except UnicodeDecodeError as exc:
        raise Undecodable(DeadLetterCode.not_utf8, f"a ce_ header is not UTF-8 ({exc.reason})") from None
    return _from_envelope({**attributes, "data": _parse_json(value)})


def _from_envelope(document: dict) -> LLMEvent | list[Anomaly]:
    try:
        envelope = CloudEvent.model_validate(document)
    except ValidationError as exc:
        raise Undecodable(DeadLetterCode.invalid_envelope, "CloudEvent: " + describe_validation_error(exc)) from None
    if envelope.type == SENTINEL_ANOMALY_EVENT_TYPE:
        return _anomalies(envelope)
    return event_from_cloudevent(envelope)


def _anomalies(envelope: CloudEvent) -> list[Anomaly]:
    try:
        alert = AnomalyAlert.model_validate(envelope.data)
    except ValidationError as exc:
        raise Undecodable(DeadLetterCode.invalid_anomaly, "anomaly: " + describe_validation_error(exc)) from None
    if envelope.time is None:
        raise Undecodable(DeadLetterCode.invalid_anomaly, "anomaly: the CloudEvent has no `time`")
    # Stored as text and JSONB: refused here, with the reason, rather than by Postgres.
    problem = storable_problem(envelope.id, "id") or storable_problem(alert.model_dump(), "data")
    if problem:
        raise Undecodable(DeadLetterCode.invalid_anomaly, f"anomaly: {problem}")
    return [
        Anomaly(anomaly_id=f"{envelope.id}/{service}", service=service, detected_at=envelope.time, alert=alert)
        for service in alert.affected_services
    ]
