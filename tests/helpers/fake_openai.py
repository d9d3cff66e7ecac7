"""A small OpenAI-compatible HTTP server for the conformance tests: chat completions (plain and streamed, with usage
on the last chunk when `stream_options.include_usage` asks), embeddings, and errors and delays chosen by the model
name.

The real `openai` client talks to it as to the real service; the instrumentation libraries under test then see
genuine responses (ids, response model, usage) and record them as they would in production.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The response model differs from the requested one, as the real service's dated snapshots do.
RESPONSE_MODEL = {"gpt-4o-mini": "gpt-4o-mini-2024-07-18", "text-embedding-3-small": "text-embedding-3-small"}
PROMPT_TOKENS = 12
COMPLETION_TOKENS = 5
EMBEDDING_TOKENS = 4
ANSWER = ["Paris", " is", " the", " capital", "."]
# Requests for these models fail with that status (a rate limit, a server error).
FAILING = {"rate-limited": (429, "rate_limit_exceeded"), "broken": (500, "server_error")}
SLOW_S = 2.0  # the "slow" model answers this late: longer than a client's timeout


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # the tests' output stays readable
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        model = body.get("model", "")
        if model == "slow":
            time.sleep(SLOW_S)
        if model in FAILING:
            status, code = FAILING[model]
            self._json(status, {"error": {"message": f"fake {code}", "type": code, "code": code}})
        elif self.path.endswith("/chat/completions"):
            if body.get("stream"):
                self._stream(model, bool((body.get("stream_options") or {}).get("include_usage")))
            else:
                self._json(200, _completion(model))
        elif self.path.endswith("/embeddings"):
            self._json(200, _embeddings(model))
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def _json(self, status: int, document: dict) -> None:
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, model: str, include_usage: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for chunk in _chunks(model, include_usage):
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


def _usage() -> dict:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    }


def _completion(model: str) -> dict:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": RESPONSE_MODEL.get(model, model),
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "".join(ANSWER)}, "finish_reason": "stop"}
        ],
        "usage": _usage(),
    }


def _chunks(model: str, include_usage: bool) -> Iterator[dict]:
    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_700_000_000}
    base["model"] = RESPONSE_MODEL.get(model, model)
    for i, piece in enumerate(ANSWER):
        delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
        yield {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
    yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    if include_usage:
        yield {**base, "choices": [], "usage": _usage()}


def _embeddings(model: str) -> dict:
    return {
        "object": "list",
        "model": RESPONSE_MODEL.get(model, model),
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
        "usage": {"prompt_tokens": EMBEDDING_TOKENS, "total_tokens": EMBEDDING_TOKENS},
    }


@contextmanager
def fake_openai() -> Iterator[str]:
    """Serve on a free port until the block ends; yields the base URL the `openai` client takes (`.../v1`)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="fake-openai", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
