"""The spend writer thread: batches, and a row the database refuses does not block the rest."""

from __future__ import annotations

import time
import uuid

from gateway.runtime import SpendWriter
from spend.models import SpendLog
from spend.services import CallRecord
from tests.gateway.conftest import wait_until


def record(request_id: str) -> CallRecord:
    now = time.time()
    return CallRecord(
        request_id,
        "",
        "",
        "",
        "",
        "",
        "",
        "gpt-4o",
        "chat.completions",
        1,
        1,
        10,
        200,
        False,
        1.0,
        now,
        now,
    )


def test_a_refused_row_is_dropped_and_the_others_are_written(transactional_db):
    taken = uuid.uuid4().hex
    writer = SpendWriter(0.01)
    writer.start()
    try:
        writer.add(record(taken))
        wait_until(lambda: SpendLog.objects.filter(request_id=taken).exists(), 5)
        fresh = uuid.uuid4().hex
        writer.add(record(taken))  # a duplicate request id: the database refuses this row
        writer.add(record(fresh))
        wait_until(lambda: SpendLog.objects.filter(request_id=fresh).exists(), 10)
    finally:
        writer.stop()
    assert writer.dropped == 1
    assert SpendLog.objects.count() == 2
