"""Backfill events from a JSONL, CSV or Parquet file through the same validation and landing path as Kafka.

    llm-optimizer backfill events.jsonl [--format jsonl|csv|parquet] [--batch-size 5000]

Files are streamed (JSONL line by line, CSV and Parquet in polars batches), so a file larger than memory works.
Re-running on the same file adds nothing: events are unique by id, dead letters by file and line/row.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import polars as pl

from llm_optimizer.decoding import Decoder
from llm_optimizer.errors import OptimizerError
from llm_optimizer.evaluation.texts import TextPolicy
from llm_optimizer.payloads import IngestCounts
from llm_optimizer.pricing import price_book
from llm_optimizer.settings import Settings, load_settings
from storage.db import connect, migrate
from storage.events_repo import land

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}
Message = tuple[str, bytes, list]


def file_format(path: Path, given: str | None) -> str:
    if given:
        return given
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise OptimizerError(
            f"cannot tell the format of {path.name!r} from its suffix; pass --format jsonl, csv or parquet"
        ) from None


def messages(path: Path, fmt: str, batch_size: int) -> Iterator[Message]:
    """(position, raw bytes, headers) for every record of the file, in order."""
    if fmt == "jsonl":
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield f"{path.name}:{number}", line.rstrip(b"\r\n"), []
        return
    frame = pl.scan_csv(path, infer_schema=False) if fmt == "csv" else pl.scan_parquet(path)
    row = 0
    for batch in frame.collect_batches(chunk_size=batch_size):
        for record in batch.iter_rows(named=True):
            row += 1
            present = {k: v for k, v in record.items() if v is not None and v != ""}
            yield f"{path.name}:row {row}", json.dumps(present, default=str).encode(), []


def backfill(
    path: Path, settings: Settings, *, fmt: str | None = None, batch_size: int = 5000, progress=None
) -> IngestCounts:
    """Land every record of `path`; `progress(counts)` is called after each batch."""
    fmt = file_format(path, fmt)
    decoder = Decoder(price_book(settings), source="file", max_message_bytes=settings.kafka.max_message_bytes)
    texts = TextPolicy.from_settings(settings.evaluation)
    totals = IngestCounts()
    stream = messages(path, fmt, batch_size)
    with connect(settings.database_url, autocommit=True) as conn:
        while chunk := list(islice(stream, batch_size)):
            batch = decoder.decode(chunk)
            with conn.transaction():
                totals = totals.plus(land(conn, batch, source="file", texts=texts))
            if progress:
                progress(totals)
    return totals


def count_records(path: Path, fmt: str) -> int:
    """How many records the file holds, read in 1 MiB chunks (Parquet: from its metadata)."""
    if fmt == "parquet":
        return pl.scan_parquet(path).select(pl.len()).collect().item()
    lines = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            lines += chunk.count(b"\n")
    return max(lines - (1 if fmt == "csv" else 0), 1)


def _progress_bar(path: Path, total: int):
    started = time.monotonic()

    def show(counts: IngestCounts) -> None:
        done = counts.accepted + counts.duplicates + counts.dead_lettered + counts.anomalies
        share = min(done / total, 1.0)
        rate = done / max(time.monotonic() - started, 1e-9)
        bar = "#" * int(share * 30)
        sys.stderr.write(f"\r{path.name} [{bar:<30}] {share:6.1%} {done:,}/{total:,} records, {rate:,.0f}/s ")
        sys.stderr.flush()

    return show


def build_parser(prog: str = "python -m starter.backfill") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("path", type=Path, help="a JSONL, CSV or Parquet file of events")
    parser.add_argument("--format", choices=["jsonl", "csv", "parquet"], help="default: from the file's extension")
    parser.add_argument("--batch-size", type=int, default=5000, help="events landed per transaction (default 5000)")
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m starter.backfill") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        if not args.path.is_file():
            raise OptimizerError(f"{args.path}: no such file")
        settings = load_settings()
        migrate(settings.database_url)
        fmt = file_format(args.path, args.format)
        bar = _progress_bar(args.path, count_records(args.path, fmt))
        totals = backfill(args.path, settings, fmt=fmt, batch_size=args.batch_size, progress=bar)
    except OptimizerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stderr.write("\n")
    print(
        f"{args.path.name}: {totals.accepted:,} new events, {totals.duplicates:,} already present, "
        f"{totals.dead_lettered:,} dead-lettered (see the dead_letters table), {totals.anomalies:,} anomalies"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
