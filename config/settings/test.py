"""Test settings: the base settings plus fast password hashing."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-secret-key")
os.environ.setdefault("GATEHOUSE_MASTER_KEY", "sk-test-master-key-0123456789abcdef")

from .base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not memory: gateway tests start server processes that read the same database.
    (BASE_DIR / "var").mkdir(exist_ok=True)  # noqa: F405
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": str(BASE_DIR / "var" / f"test_gatehouse_{os.getpid()}.sqlite3")  # noqa: F405
    }
# Short, unless a test's gateway process is given its own (see tests/gateway/conftest.py).
GATEHOUSE_SPEND_FLUSH_INTERVAL = env.float("GATEHOUSE_SPEND_FLUSH_INTERVAL", default=0.1)  # noqa: F405
