"""Offline token estimates: about four characters per token, never zero for real text.

Used to reserve budget and TPM before a call, and to price a stream whose upstream sent no
``usage``. The estimate is deliberately simple and needs no network or vocabulary file.
"""

from __future__ import annotations

from typing import Any

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4  # role and separators
TOKENS_PER_REPLY = 2


def count_text(text: str) -> int:
    if not text:
        return 0
    return max(1, -(-len(text) // CHARS_PER_TOKEN))


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        texts = (part.get("text") for part in content if isinstance(part, dict))
        return " ".join(text for text in texts if isinstance(text, str))
    return ""


def count_messages(messages: Any) -> int:
    """Prompt tokens of a chat request's ``messages``."""
    if not isinstance(messages, list):
        return 0
    total = TOKENS_PER_REPLY
    for message in messages:
        if isinstance(message, dict):
            total += TOKENS_PER_MESSAGE + count_text(_content_text(message.get("content")))
            total += count_text(str(message.get("name") or ""))
    return total


def count_embedding_input(value: Any) -> int:
    """Tokens of an embeddings request's ``input`` (a string or a list of strings)."""
    if isinstance(value, str):
        return count_text(value)
    if isinstance(value, list):
        if value and all(isinstance(item, int) for item in value):
            return len(value)  # already tokens
        return sum(count_embedding_input(item) for item in value)
    return 0
