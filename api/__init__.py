"""The HTTP API: config resolution, event ingestion (JSON batches and OTLP traces) and loop controls."""
