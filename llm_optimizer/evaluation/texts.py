"""Which texts of an event are kept for evaluation, and what is redacted from them first."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from llm_optimizer.auth import KEY_PATTERN
from llm_optimizer.events import LLMEvent
from llm_optimizer.redaction import REDACTED
from llm_optimizer.settings import EvaluationSettings

ALWAYS_REDACTED = (
    re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),  # emails
    KEY_PATTERN,
    re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"),  # provider API keys pasted into prompts
)


@dataclass(frozen=True)
class TextPolicy:
    store: bool = False
    patterns: tuple[re.Pattern, ...] = field(default=ALWAYS_REDACTED)

    @classmethod
    def from_settings(cls, settings: EvaluationSettings) -> TextPolicy:
        return cls(settings.store_text, ALWAYS_REDACTED + tuple(re.compile(p) for p in settings.redact_patterns))

    def redact(self, text: str | None) -> str | None:
        if text is None:
            return None
        for pattern in self.patterns:
            text = pattern.sub(REDACTED, text)
        return text

    def row(self, event: LLMEvent) -> tuple | None:
        """(event_id, request, response, reference) redacted, or None when nothing is to be stored."""
        if not self.store or (event.request_text is None and event.response_text is None):
            return None
        return (
            event.event_id,
            self.redact(event.request_text),
            self.redact(event.response_text),
            self.redact(event.reference_text),
        )
