"""dead letters carry a code (`DeadLetterCode`) beside their reason's text

Rows stored before get the code their text says: each producer's text has a fixed start (llm_optimizer/decoding.py,
llm_optimizer/events.py, storage/events_repo.py), so a start decides it; a text that only names a field and a value
(`field = value: ...`) was the event model's. What none of them decides, and an OTLP span's refusal (whose text is
like the event model's), is `unknown`.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 05:10:00
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# In order: the first pattern a reason matches gives its code (LIKE, so `_` is escaped where it is a letter).
BACKFILL = (
    ("db_refused", "Postgres refused it%"),
    ("no_body", "message has no body%"),
    ("too_large", "message of % bytes is larger than kafka.max\\_message\\_bytes%"),
    ("not_utf8", "body is not UTF-8%"),
    ("not_utf8", "a ce\\_ header is not UTF-8%"),
    ("not_json", "body is not valid JSON%"),
    ("not_json", "data: not valid JSON%"),
    ("not_an_object", "body is a JSON %, expected an object"),
    ("not_an_object", "data = %: must be a JSON object"),
    ("invalid_envelope", "CloudEvent: %"),
    ("invalid_envelope", "type = %: not an LLM request event%"),
    ("invalid_anomaly", "anomaly: %"),
)


def upgrade() -> None:
    op.execute("ALTER TABLE dead_letters ADD COLUMN code text")
    cases = " ".join(f"WHEN reason LIKE '{pattern}' THEN '{code}'" for code, pattern in BACKFILL)
    op.execute(
        f"UPDATE dead_letters SET code = CASE {cases} "
        "WHEN source <> 'otlp' AND reason LIKE '% = %' THEN 'invalid_event' ELSE 'unknown' END"
    )
    op.execute("ALTER TABLE dead_letters ALTER COLUMN code SET NOT NULL")


def downgrade() -> None:
    op.drop_column("dead_letters", "code")
