"""Spend log rows are written by a process of their own, beside each gateway process.

The gateway process only appends finished calls to a queue; once per interval a thread
pickles what queued up and pipes it to the writer process, which writes batches to the
database (``spend.services.spend_record_batch``). The database work, and the GIL it holds,
stay off the process that serves requests.

No row is lost on a clean stop: the gateway sends what is left and closes the pipe; the
writer writes everything it received and exits. Rows stay with the gateway until the writer
acknowledges them, so a writer that dies is replaced and the unacknowledged rows are sent
again (the new writer skips those its predecessor wrote before dying).
The writer ignores SIGTERM and SIGINT: it stops when the pipe closes, after the gateway's
last rows, also when the gateway itself was killed.

Budget alerts raised by a batch are sent to the webhook from a thread of the writer process
(right away, and every ``ALERT_POLL_INTERVAL`` for retries that came due), so that neither
the requests nor the spend writes wait for the receiver.

Pipe format: gateway → writer, frames of a 4-byte length and a pickle (first the database
settings and the alert webhook URL, then ``(resent, [chunk, ...])``, each chunk a pickled list
of up to FRAME_CHUNK ``CallRecord``); writer → gateway,
lines: ``ready`` once, then ``written dropped lost`` per batch, in the order the rows were
sent.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # the writer process imports Django's models only after django.setup()
    from spend.services import CallRecord

logger = logging.getLogger(__name__)

BATCH_LIMIT = 5000  # spend rows per transaction
FRAME_CHUNK = 250  # spend rows pickled at a time by the gateway (see SpendWriter._pickled)
ISOLATE_AFTER_FAILURES = 3  # then write row by row to find the row the database refuses
GIVE_UP_DELAY = 5.0  # stopping: retry an unreachable database until the backoff reaches this
RESPAWN_LIMIT = 3  # stopping: writers started in a row without one acknowledging a row
ALERT_POLL_INTERVAL = 5.0  # seconds between looks for budget alerts due for a retry
ALERT_ROUND = 100  # alerts sent between two looks at the stop flag
ALERT_STOP_TIMEOUT = 10.0  # stopping: time left to send the alerts the last batches raised
HEADER = struct.Struct(">I")


def database_call(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ORM work; a failed call drops the connection so that the next one reconnects."""
    from django.db import connection

    try:
        return function(*args, **kwargs)
    except Exception:
        connection.close()
        raise


def database_reachable() -> bool:
    from django.db import connection

    try:
        database_call(connection.ensure_connection)
        return True
    except Exception:
        return False


class FrameReader:
    """Frames from a pipe's file descriptor, without blocking past what ``select`` saw."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = bytearray()
        self.closed = False

    def fill(self) -> None:
        chunk = os.read(self.fd, 1 << 20)
        if not chunk:
            self.closed = True
        self.buffer += chunk

    def frames(self) -> Iterator[Any]:
        """The complete frames received so far."""
        while len(self.buffer) >= HEADER.size:
            (size,) = HEADER.unpack_from(self.buffer)
            if len(self.buffer) < HEADER.size + size:
                return
            payload = bytes(self.buffer[HEADER.size : HEADER.size + size])
            del self.buffer[: HEADER.size + size]
            yield pickle.loads(payload)


def frame(value: Any) -> bytes:
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(payload)) + payload


# --- the writer process ---------------------------------------------------------------------


class AlertSender:
    """Sends budget alerts from a thread of the writer process (with its own database
    connection): when a batch raised some, every ``ALERT_POLL_INTERVAL`` for retries, and once
    more when stopping. Each alert is claimed in the database, so the senders of several
    gateway processes never send one twice."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.wake = threading.Event()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="gatehouse-alerts", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()
        self.thread.join(ALERT_STOP_TIMEOUT)

    def _run(self) -> None:
        from django.db import connection

        from spend.services import budget_alerts_deliver

        try:
            while True:
                self.wake.wait(ALERT_POLL_INTERVAL)
                self.wake.clear()
                stopping = self.stopping
                try:
                    sent = database_call(budget_alerts_deliver, url=self.url, limit=ALERT_ROUND)
                    if sent.attempted == ALERT_ROUND:
                        self.wake.set()  # more may be due: go on right away
                except Exception:
                    logger.exception("Could not send budget alerts.")
                if stopping:
                    return
        finally:
            connection.close()


class BatchWriter:
    """Writes batches; after repeated failures row by row, so that one row the database
    refuses (logged with its request id, then dropped) cannot hold back the rest. Wakes the
    alert sender when a batch raised budget alerts."""

    def __init__(self, alerts: AlertSender | None = None) -> None:
        self.failures = 0
        self.alerts = alerts

    def _record(self, batch: list[CallRecord], resent: bool) -> None:
        from spend.services import spend_record_batch

        raised = database_call(spend_record_batch, records=batch, skip_logged=resent)
        if raised and self.alerts is not None:
            self.alerts.wake.set()

    def write(self, batch: list[CallRecord], resent: bool = False) -> tuple[int, int] | None:
        """(written, dropped) for a prefix of the batch (all of it unless the database went
        away meanwhile), or None when nothing could be written (try again later). Resent
        rows that are in the database already count as written."""
        try:
            self._record(batch, resent)
            self.failures = 0
            return len(batch), 0
        except Exception:
            self.failures += 1
            logger.exception(
                "Could not write %d spend log rows (try %d).", len(batch), self.failures
            )
        if self.failures < ISOLATE_AFTER_FAILURES:
            return None
        written = dropped = 0
        for record in batch:
            try:
                self._record([record], resent)
                written += 1
            except Exception:
                if not database_reachable():
                    return None if not written + dropped else (written, dropped)
                logger.exception(
                    "Dropped spend log row %s: refused by the database.", record.request_id
                )
                dropped += 1
        self.failures = 0
        return written, dropped


class Acks:
    """The writer's acknowledgements; if the gateway is gone, writing goes on without them."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream: IO[str] | None = stream

    def send(self, line: str) -> None:
        if self.stream is None:
            return
        try:
            self.stream.write(line)
        except OSError:
            self.stream = None  # the gateway died: nobody reads, the rows still get written


def serve(reader: FrameReader, acks: Acks, interval: float, writer: BatchWriter) -> None:
    """Write what arrives until the pipe closes and everything received is written (or the
    database stayed unreachable while stopping). Rows sent again after a writer died come
    first; ``resent`` counts them."""
    pending: collections.deque[CallRecord] = collections.deque()
    resent = 0

    def receive() -> None:
        nonlocal resent
        for again, chunks in reader.frames():
            for chunk in chunks:
                rows = pickle.loads(chunk)
                pending.extend(rows)
                if again:
                    resent += len(rows)

    receive()
    delay = interval
    next_try = 0.0
    while True:
        if not reader.closed:
            timeout = max(0.0, next_try - time.monotonic()) if pending else None
            if select.select([reader.fd], [], [], timeout)[0]:
                reader.fill()
                receive()
        if not pending:
            if reader.closed:
                return
            continue
        if time.monotonic() < next_try:
            if reader.closed:
                time.sleep(next_try - time.monotonic())  # stopping: nothing else to wait for
            continue
        while pending:
            size = min(resent, BATCH_LIMIT) if resent else min(BATCH_LIMIT, len(pending))
            batch = [pending.popleft() for _ in range(size)]
            done = writer.write(batch, resent=bool(resent))
            if done is None:
                pending.extendleft(reversed(batch))
                break
            written, dropped = done
            pending.extendleft(reversed(batch[written + dropped :]))
            resent = max(0, resent - written - dropped)
            acks.send(f"{written} {dropped} 0\n")
        if pending:
            next_try = time.monotonic() + delay
            delay = min(delay * 2, GIVE_UP_DELAY)
            if reader.closed and delay >= GIVE_UP_DELAY:
                logger.error(
                    "Lost %d spend log rows: the database stayed unreachable.", len(pending)
                )
                acks.send(f"0 0 {len(pending)}\n")
                return
        else:
            delay, next_try = interval, 0.0


def main() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Acknowledgements get the real stdout; anything printed goes to stderr.
    acks = Acks(os.fdopen(os.dup(1), "w", buffering=1))
    os.dup2(2, 1)
    acks.send("ready\n")  # from here on, only a closed pipe stops this process
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    reader = FrameReader(0)
    setup: dict[str, Any] | None = None
    while setup is None and not reader.closed:
        reader.fill()
        setup = next(reader.frames(), None)
    if setup is None:
        return
    import django

    django.setup()
    from django.db import connections

    # The gateway's own database settings (under tests: the test database), in the dict every
    # thread's connection is made from (the alert sender's too).
    connections["default"].settings_dict.update(setup["database"])
    alerts = AlertSender(setup["alert_webhook_url"]) if setup["alert_webhook_url"] else None
    if alerts is not None:
        alerts.start()
    try:
        serve(reader, acks, setup["interval"], BatchWriter(alerts))
    finally:
        if alerts is not None:
            alerts.stop()
        connections.close_all()


# --- the gateway's side ---------------------------------------------------------------------


class SpendWriter:
    """The gateway process's end: a queue (``add`` is all the request path does), a thread
    that sends it to the writer process once per interval, and the writer's acknowledgements.

    A writer that dies is replaced (after 1, 2, 4 ... up to 30 s while it keeps dying) and
    gets the rows its predecessor did not acknowledge. Stopping waits up to ``STOP_TIMEOUT``
    for the writer to finish; after that it is killed and what it held is reported lost."""

    STOP_TIMEOUT = 20.0

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.queue: collections.deque[CallRecord] = collections.deque()
        self.resend: collections.deque[CallRecord] = collections.deque()
        self.unacked: collections.deque[CallRecord] = collections.deque()
        self.lock = threading.Lock()  # unacked: the sender appends, the ack reader pops
        self.wake = threading.Event()
        self.ready = threading.Event()  # the writer process ignores signals from now on
        self.stopping = False
        self.abandoned = False
        self.written = 0
        self.dropped = 0
        self.lost = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.ack_reader: threading.Thread | None = None
        self.thread = threading.Thread(target=self._run, name="gatehouse-spend", daemon=True)

    @property
    def waiting(self) -> int:
        """Rows not written yet: queued, or sent and not acknowledged."""
        return len(self.queue) + len(self.resend) + len(self.unacked)

    def start(self) -> None:
        self._spawn()
        self.thread.start()

    def add(self, record: CallRecord) -> None:
        self.queue.append(record)  # deque.append is atomic: no lock on the request path

    def _spawn(self) -> bool:
        from django.conf import settings
        from django.db import connection

        self.ready.clear()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "gateway.spend_writer"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=settings.BASE_DIR,
                start_new_session=True,  # a terminal's Ctrl-C goes to the server, not here
            )
        except OSError:
            logger.exception("Could not start the spend writer process.")
            self.process = None
            return False
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self.ack_reader = threading.Thread(
            target=self._read_acks,
            args=(process.stdout,),
            name="gatehouse-spend-acks",
            daemon=True,
        )
        self.ack_reader.start()
        setup = {
            "database": dict(connection.settings_dict),
            "interval": self.interval,
            "alert_webhook_url": settings.GATEHOUSE_ALERT_WEBHOOK_URL,
        }
        return self._write(setup)

    def _write(self, value: Any) -> bool:
        assert self.process is not None and self.process.stdin is not None
        try:
            self.process.stdin.write(frame(value))
            self.process.stdin.flush()
            return True
        except OSError:
            return False  # broken pipe: the writer died; what it was sent is in unacked

    def _read_acks(self, stream: IO[bytes]) -> None:
        for line in stream:
            if line == b"ready\n":
                self.ready.set()
                continue
            written, dropped, lost = (int(part) for part in line.split())
            with self.lock:
                for _ in range(written + dropped + lost):
                    self.unacked.popleft()
            self.written += written
            self.dropped += dropped
            self.lost += lost

    def _bury(self) -> None:
        """The writer is gone: collect it, and keep what it did not acknowledge to send again."""
        assert self.process is not None and self.ack_reader is not None
        self.process.wait()
        self.ack_reader.join()
        logger.error(
            "The spend writer process exited (%s); %d rows to send again.",
            self.process.returncode,
            len(self.unacked),
        )
        with self.lock:
            self.resend.extendleft(reversed(self.unacked))
            self.unacked.clear()
        self.process = None

    def _send_queued(self) -> bool:
        for source, again in ((self.resend, True), (self.queue, False)):
            while source:
                batch: list[CallRecord] = []
                try:
                    while len(batch) < BATCH_LIMIT:
                        batch.append(source.popleft())
                except IndexError:
                    pass
                with self.lock:
                    self.unacked.extend(batch)
                if not self._write((again, self._pickled(batch))):
                    return False
        return True

    @staticmethod
    def _pickled(batch: list[CallRecord]) -> list[bytes]:
        """The rows pickled a chunk at a time, the GIL let go in between: one pickle of a
        whole batch would hold it, and stall the requests, for milliseconds."""
        chunks = []
        for start in range(0, len(batch), FRAME_CHUNK):
            chunks.append(pickle.dumps(batch[start : start + FRAME_CHUNK], pickle.HIGHEST_PROTOCOL))
            time.sleep(0)  # lets a waiting event loop take the GIL
        return chunks

    def _finish(self) -> bool:
        """Close the pipe and wait for the writer to write everything; False if it died."""
        assert self.process is not None and self.process.stdin is not None
        with contextlib.suppress(OSError):  # the writer died already
            self.process.stdin.close()
        try:
            self.process.wait(timeout=self.STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            logger.error("The spend writer did not finish in %.0f s; killed.", self.STOP_TIMEOUT)
            self.process.kill()
            self.process.wait()
            self.abandoned = True
        assert self.ack_reader is not None
        self.ack_reader.join()
        return self.process.returncode == 0

    def _run(self) -> None:
        failures = 0  # writers in a row that died without acknowledging anything
        written_before = 0
        retry_at = 0.0
        while not self.abandoned:
            self.wake.wait(self.interval)
            self.wake.clear()
            stopping = self.stopping
            alive = self.process is not None and self.process.poll() is None
            if alive and self._send_queued():
                if self.written > written_before:
                    failures, written_before = 0, self.written
                if not stopping:
                    continue
                if self._finish() or self.abandoned:
                    return
            if self.process is not None:
                self._bury()
            if stopping and failures >= RESPAWN_LIMIT:
                return
            if not stopping and time.monotonic() < retry_at:
                continue
            failures += 1
            retry_at = time.monotonic() + min(2.0 ** (failures - 1), 30.0)
            self._spawn()
            self.wake.set()  # send to the new writer right away

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()
        self.thread.join(self.STOP_TIMEOUT + 5)
        if self.thread.is_alive():  # stuck writing to a writer that no longer reads
            self.abandoned = True
            if self.process is not None:
                self.process.kill()
            self.thread.join(5)
        missing = self.waiting + self.lost
        if missing:
            logger.error("Lost %d spend log rows: they could not be written.", missing)


if __name__ == "__main__":
    main()
