"""The ASGI entry point for any server: `uvicorn api.asgi:app` (reads the settings at import)."""

from api.app import create_app
from llm_optimizer.settings import load_settings

app = create_app(load_settings())
