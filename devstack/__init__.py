"""The local embedded stack: real Postgres, Temporal and Kafka servers from PyPI wheels, for development and tests."""

from devstack.stack import LocalStack

__all__ = ["LocalStack"]
