"""The spend writer thread: batches, and a row the database refuses does not block the rest."""

from __future__ import annotations

import signal
import time
import uuid

from gateway.spend_writer import SpendWriter
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


def test_rows_sent_to_a_writer_that_dies_are_written_by_its_successor(transactional_db):
    writer = SpendWriter(0.01)
    writer.start()
    try:
        first = writer.process
        assert first is not None
        first.send_signal(signal.SIGSTOP)  # holds rows without writing them
        held = uuid.uuid4().hex
        writer.add(record(held))
        wait_until(lambda: not writer.queue and len(writer.unacked) == 1, 5)  # sent, not written
        first.kill()
        wait_until(lambda: SpendLog.objects.filter(request_id=held).exists(), 10)
        assert writer.process is not first
    finally:
        writer.stop()
    assert (writer.written, len(writer.unacked)) == (1, 0)
    assert SpendLog.objects.count() == 1


def test_the_writer_ignores_sigterm_and_writes_the_last_rows_when_the_pipe_closes(
    transactional_db,
):
    writer = SpendWriter(0.01)
    writer.start()
    try:
        process = writer.process
        assert process is not None
        assert writer.ready.wait(10)
        process.send_signal(signal.SIGTERM)  # e.g. sent to the whole process group
        last = uuid.uuid4().hex
        writer.add(record(last))
    finally:
        writer.stop()
    assert process.returncode == 0
    assert SpendLog.objects.filter(request_id=last).exists()


def test_stopping_gives_up_on_a_writer_that_hangs_and_reports_the_rows_lost(
    transactional_db, caplog
):
    writer = SpendWriter(0.01)
    writer.STOP_TIMEOUT = 1.0
    writer.start()
    process = writer.process
    assert process is not None
    process.send_signal(signal.SIGSTOP)  # e.g. stuck on a database that does not answer
    writer.add(record(uuid.uuid4().hex))
    started = time.monotonic()
    writer.stop()
    assert time.monotonic() - started < 10
    assert process.returncode == -signal.SIGKILL
    assert "Lost 1 spend log rows" in caplog.text
    assert not SpendLog.objects.exists()
