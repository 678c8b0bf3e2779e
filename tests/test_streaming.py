"""CSV answers go out a chunk at a time: served over ASGI, the rows are pulled as the client
reads, never all before the first byte (which would hold a whole export in memory)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from asgiref.sync import async_to_sync

from config.streaming import CHUNK_ROWS, csv_response


def test_rows_are_pulled_one_chunk_ahead_of_the_reader() -> None:
    pulled = 0

    def rows() -> Iterator[tuple[int, str]]:
        nonlocal pulled
        for number in range(CHUNK_ROWS * 3):
            pulled += 1
            yield number, f"row {number}"

    response = csv_response("numbers.csv", ["number", "text"], rows())
    assert response.is_async

    async def read() -> tuple[list[int], bytes]:
        seen, body = [], b""
        async for chunk in response:
            seen.append(pulled)
            body += chunk
        return seen, body

    seen, body = async_to_sync(read)()
    # Each chunk (CHUNK_ROWS lines, the header first) went out as soon as its rows had been
    # pulled: the first when less than a chunk of rows had been read, not all of them.
    assert seen == [CHUNK_ROWS - 1, CHUNK_ROWS * 2 - 1, CHUNK_ROWS * 3 - 1, CHUNK_ROWS * 3]
    parsed = list(csv.reader(io.StringIO(body.decode())))
    assert parsed[0] == ["number", "text"]
    assert parsed[-1] == [str(CHUNK_ROWS * 3 - 1), f"row {CHUNK_ROWS * 3 - 1}"]
    assert len(parsed) == CHUNK_ROWS * 3 + 1
    assert response["Content-Disposition"] == 'attachment; filename="numbers.csv"'
