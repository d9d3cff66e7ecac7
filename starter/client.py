"""The Temporal client, configured the same way for the worker, the starters and the API."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from llm_optimizer.settings import Settings


async def connect_client(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal.namespace,
        data_converter=pydantic_data_converter,
    )
