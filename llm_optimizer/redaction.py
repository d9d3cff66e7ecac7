"""Redaction of secrets from text: our API keys, bearer tokens, URL passwords and secret-named query parameters.

Shared by the logs (`runtime/logs.py`) and the texts kept for quality evaluation.
"""

from __future__ import annotations

import re

from llm_optimizer.auth import KEY_PATTERN

REDACTED = "[REDACTED]"
# Each pattern's first group, if it has one, is kept: only what follows it is the secret.
PATTERNS = (
    KEY_PATTERN,
    re.compile(r"(?i)(?<=bearer )[^\s\"']+"),
    re.compile(r"(?<=://)([^:/@\s]+:)[^@/\s]+(?=@)"),
    # A query parameter named like a secret: `?` or `&` (or `;`), the name, `=`, then the value up to the next
    # separator. Over-redacting a harmless `?author=` costs less than printing a stranger's token.
    re.compile(
        r"(?i)([?&;][^=&;?#\s\"'<>]*(?:token|key|secret|passw|pwd|auth|sig|credential|session|cookie)"
        r"[^=&;?#\s\"'<>]*=)[^&;#\s\"'<>]+"
    ),
)


def redact(text: str) -> str:
    for pattern in PATTERNS:
        text = pattern.sub(lambda m: f"{m.group(1)}{REDACTED}" if m.groups() else REDACTED, text)
    return text
