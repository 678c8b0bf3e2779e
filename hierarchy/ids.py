"""Public ids (Decision 1): strings, a uuid4 by default, or a caller-chosen id of a fixed shape."""

from __future__ import annotations

import re
import uuid

from django.core.exceptions import ValidationError

PUBLIC_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
PUBLIC_ID_MESSAGE = (
    "Ids start with a letter or digit and hold at most 128 letters, digits or . _ : @ -."
)
_PUBLIC_ID = re.compile(PUBLIC_ID_PATTERN.removeprefix("^").removesuffix("$"))


def public_id_validator(value: str) -> None:
    """The whole value must match (a trailing newline does not slip through ``$``)."""
    if not isinstance(value, str) or not _PUBLIC_ID.fullmatch(value):
        raise ValidationError(PUBLIC_ID_MESSAGE, code="invalid_id")


def new_public_id() -> str:
    return str(uuid.uuid4())
