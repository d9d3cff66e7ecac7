"""Logging for the worker and the API: plain or JSON lines, with secrets redacted from every record.

Redacted: our API keys, bearer tokens, the password of any URL (`postgresql://user:secret@host`), and the value
of any query parameter whose name says it is a secret (it contains token, key, secret, passw, pwd, auth, sig,
credential, session or cookie, in any case: `?token=`, `&api_key=`, `?X-Amz-Signature=`), whoever's it is.
JSON lines carry the record's extras (workflow_id, service, config_version when the caller sets them).
"""

from __future__ import annotations

import json
import logging
import time

from llm_optimizer.redaction import redact
from llm_optimizer.settings import Settings

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        document.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            document["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(document, default=str)


def configure_logging(settings: Settings) -> None:
    """Root logging as the settings say; every handler redacts (handlers added later by uvicorn included)."""
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    if settings.logging.json_format:
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = time.gmtime
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.logging.level.value.upper())
