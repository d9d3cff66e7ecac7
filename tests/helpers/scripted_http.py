"""A real HTTP server on a free port that answers from a script: for tests of the integration clients.

Each request takes the next scripted answer (the last one repeats): (status, body, headers, delay_s). Requests are
recorded (method, path, body: decoded JSON, or bytes) so a test can count what reached the server.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Answer:
    status: int = 200
    body: Any = None  # JSON-encoded unless bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Script:
    answers: list[Answer]
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    url: str = ""

    def next(self) -> Answer:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


@contextmanager
def scripted_server(answers: list[Answer]) -> Iterator[Script]:
    script = Script(list(answers))
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            with lock:
                script.requests.append((self.command, self.path, _decoded(raw)))
                answer = script.next()
            time.sleep(answer.delay_s)
            body = answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body).encode()
            try:
                self.send_response(answer.status)
                for name, value in {"Content-Type": "application/json", **answer.headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        do_GET = do_POST = do_PUT = _answer

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    script.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield script
    finally:
        server.shutdown()
        server.server_close()


def _decoded(raw: bytes) -> Any:
    """JSON bodies decoded; others (protobuf) kept as bytes."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def chat_answer(scores: dict[str, int] | str, prompt_tokens: int = 500, completion_tokens: int = 40) -> dict:
    """An OpenAI chat-completions response whose message is `scores` as the judge's JSON (or raw text)."""
    content = scores if isinstance(scores, str) else json.dumps({"scores": scores, "rationale": "ok"})
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
    }
