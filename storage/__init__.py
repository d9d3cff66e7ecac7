"""Postgres storage: the schema, its migrations and the repositories that read and write it."""
