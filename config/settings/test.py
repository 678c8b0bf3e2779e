"""Test settings: the base settings plus fast password hashing."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-secret-key")
os.environ.setdefault("GATEHOUSE_MASTER_KEY", "sk-test-master-key-0123456789abcdef")

from .base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
