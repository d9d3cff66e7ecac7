"""Observed prices: what events of a model cost per token, from the cost the events reported themselves.

The lowest layer of the price book (docs/configuration.md, "Prices"). Events do not record whether their
`cost_usd` was reported or filled in at ingestion, so reported costs are told apart by the models they belong to:
ingestion fills a cost only from the static layers of the price book (price file, genai-prices), so a model those
layers cannot price has no filled costs, and only such models are asked for here (`with_observed` does that). The
one exception, documented there: events costed under an earlier pricing configuration (a price file entry since
removed, or the hand-kept list of earlier releases) still carry the cost filled then.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import psycopg

from llm_optimizer.pricing import ModelPrice, PriceBook


def observed_prices(
    conn: psycopg.Connection,
    since: datetime,
    until: datetime | None = None,
    *,
    models: Collection[str] | None = None,
    min_requests: int = 1,
) -> dict[str, ModelPrice]:
    """Per model (of `models`, or every model), in any service, from events in [since, until) with a cost: one
    blended price per token, sum(cost) / sum(tokens in + out) over the events that reported both token counts, as
    both input and output price; a model none of whose costed events reported tokens gets the mean cost per request
    instead. Models with fewer than `min_requests` costed
    events are left out: a handful of requests is not a price."""
    if models is not None and not models:
        return {}
    rows = conn.execute(
        """
        SELECT model, mode() WITHIN GROUP (ORDER BY provider), count(*), sum(cost_usd),
               sum(cost_usd) FILTER (WHERE tokens_in IS NOT NULL AND tokens_out IS NOT NULL),
               sum(tokens_in::bigint + tokens_out::bigint)
        FROM events
        WHERE ts >= %(since)s AND (%(until)s::timestamptz IS NULL OR ts < %(until)s)
          AND cost_usd IS NOT NULL
          AND (%(any)s OR model = ANY(%(models)s))
        GROUP BY model
        HAVING count(*) >= %(min_requests)s
        """,
        {
            "since": since,
            "until": until,
            "any": models is None,
            "models": list(models or ()),
            "min_requests": min_requests,
        },
    ).fetchall()
    prices = {}
    for model, provider, requests, cost, cost_with_tokens, tokens in rows:
        if tokens:
            per_1m = float(cost_with_tokens) / float(tokens) * 1_000_000
            prices[model] = ModelPrice(
                model=model, provider=provider, input_per_1m=per_1m, output_per_1m=per_1m, source="observed"
            )
        else:
            prices[model] = ModelPrice(
                model=model, provider=provider, per_request=float(cost) / requests, source="observed"
            )
    return prices


def with_observed(
    conn: psycopg.Connection,
    book: PriceBook,
    models: Collection[str],
    *,
    since: datetime,
    until: datetime | None = None,
    min_requests: int = 1,
) -> PriceBook:
    """`book` over the observed prices of those of `models` that it cannot price otherwise.

    Asking only for those is what keeps costs filled in by ingestion out: ingestion fills from the same static
    layers, so a model they cannot price carries only costs its events reported. A model priced at ingestion time
    but no longer (its price file entry removed, or priced by the hand-kept list of earlier releases) is the
    exception: its old events carry the cost filled then, which comes back as its observed price.
    """
    unpriced = [m for m in dict.fromkeys(models) if book.price(m) is None]
    return book.with_observed(
        observed_prices(conn, since, until, models=unpriced, min_requests=min_requests) if unpriced else {}
    )
