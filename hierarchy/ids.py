"""Public ids (Decision 1): strings, a uuid4 by default, or a caller-chosen id of a fixed shape."""

from __future__ import annotations

import re
import uuid

from django.core.validators import RegexValidator

PUBLIC_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
PUBLIC_ID_MESSAGE = (
    "Ids start with a letter or digit and hold at most 128 letters, digits or . _ : @ -."
)
public_id_validator = RegexValidator(re.compile(PUBLIC_ID_PATTERN), PUBLIC_ID_MESSAGE)


def new_public_id() -> str:
    return str(uuid.uuid4())
