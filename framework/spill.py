"""Framed record files: the spill file and the dead-letter file.

Each record is one line, ``CS1 <crc32> <json>``: a torn last line (SIGKILL,
full disk) or a damaged one fails its checksum and is skipped, reported and
never blocks the records after it. Files are created owner-only (0600, their
folder 0700), whatever the umask: they hold span content (already redacted).

Several processes may share one file (a forked child, two workers started
from one configuration), so every append and every replay holds an exclusive
record lock on it. A replay rewrites the file in place, or removes it once
empty; an appender that got the lock checks that the file it holds is still
the one at the path, so it never writes into a removed file.

The spill file holds prepared batches (the writer's row format) the store
could not take; they are replayed in order once it answers. A line is removed
only after its batch was stored (or its rejected rows dead-lettered), and
replaying is idempotent on the store side, so a crash in between cannot
duplicate anything.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from chainsight.framework.private_files import open_private
from chainsight.framework.store_api import Rows

MAGIC: Final = "CS1"


def frame(record: Any) -> bytes:
    payload = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
    data = payload.encode("utf-8")
    return f"{MAGIC} {zlib.crc32(data):08x} ".encode() + data + b"\n"


@dataclass(frozen=True)
class Damaged:
    """A line that is not a whole, intact record."""

    line_number: int
    reason: str
    text: str


def unframe(line: bytes, line_number: int) -> Any | Damaged:
    """The record of one line (without its newline), or what is wrong with it."""
    if line.startswith(b"{"):  # written unframed by Chainsight before 0.2
        try:
            return json.loads(line)
        except ValueError as exc:
            return Damaged(line_number, f"unreadable JSON: {exc}", _preview(line))
    parts = line.split(b" ", 2)
    if len(parts) != 3 or parts[0] != MAGIC.encode():
        return Damaged(line_number, "not a Chainsight record", _preview(line))
    try:
        expected = int(parts[1], 16)
    except ValueError:
        return Damaged(line_number, "no checksum", _preview(line))
    if zlib.crc32(parts[2]) != expected:
        return Damaged(line_number, "checksum mismatch (a torn or damaged record)", _preview(line))
    try:
        return json.loads(parts[2])
    except ValueError as exc:
        return Damaged(line_number, f"unreadable JSON: {exc}", _preview(line))


def _preview(line: bytes) -> str:
    """The whole line as text: it is kept in the dead-letter file."""
    return line.decode("utf-8", "replace")


class RecordFile:
    """An append-only file of framed JSON records, shared safely between
    threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def exists(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except OSError:
            return False

    def after_fork(self) -> None:
        self._lock = threading.Lock()

    @contextmanager
    def _locked(self, deadline: float | None = None) -> Iterator[IO[bytes]]:
        """The file, open for reading and writing, under an exclusive lock,
        waited for until ``deadline`` (``time.monotonic()``; TimeoutError
        after it). The lock is a POSIX record lock: a process owns it, so a
        child forked while it is held does not inherit it. A replay may
        remove the file while we wait: then the file we hold is no longer
        the one at the path, and we open again."""
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._lock.acquire(timeout=-1 if wait is None else wait):
            raise TimeoutError(f"{self.path} is busy")
        try:
            while True:
                fh = os.fdopen(open_private(self.path, os.O_RDWR), "r+b")
                try:
                    _lock_file(fh.fileno(), deadline, self.path)
                    try:
                        same = os.stat(self.path).st_ino == os.fstat(fh.fileno()).st_ino
                    except FileNotFoundError:
                        same = False
                    if same:
                        yield fh
                        return
                finally:
                    fh.close()  # also releases the record lock
        finally:
            self._lock.release()

    def append(self, records: list[Any], deadline: float | None = None) -> None:
        """Append records durably. On an error (disk full, or the file still
        locked at ``deadline``) the file is cut back to where it was, so no
        torn record is left, and the error (an OSError) propagates."""
        data = b"".join(frame(r) for r in records)
        with self._locked(deadline) as fh:
            end = fh.seek(0, os.SEEK_END)
            if end > 0:
                fh.seek(end - 1)
                if fh.read(1) != b"\n":  # a torn record: start on a line of our own
                    data = b"\n" + data
            try:
                fh.seek(end)
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            except OSError:
                try:
                    fh.truncate(end)
                except OSError:
                    pass
                raise

    def read(self) -> list[Any | Damaged]:
        """Every record in order (damaged lines as :class:`Damaged`)."""
        with self._lock:  # closing any descriptor of the file drops this process's record lock
            try:
                with self.path.open("rb") as fh:
                    return [unframe(line.rstrip(b"\n"), n)
                            for n, line in enumerate(fh, start=1) if line.strip()]
            except FileNotFoundError:
                return []


def _lock_file(fd: int, deadline: float | None, path: Path) -> None:
    if deadline is None:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        return
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{path} is locked by another process") from None
            time.sleep(0.01)


class SpillFile(RecordFile):
    """Prepared batches waiting for the store, replayed in order."""

    def replay(self, write: Callable[[Rows], None], damaged: Callable[[Damaged], None]) -> int:
        """Write every spilled batch in order; return how many were replayed.

        ``damaged`` gets each torn or unreadable record (they are removed).
        Stops at the first batch whose ``write`` raises and keeps it and the
        rest; the exception propagates so the caller can tell the store is
        still down.
        """
        with self._locked() as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                return 0  # a device (say /dev/full): nothing was kept there
            lines = [line for line in fh.read().split(b"\n") if line.strip()]
            done = 0
            try:
                for number, line in enumerate(lines, start=1):
                    record = unframe(line, number)
                    if not isinstance(record, Damaged | dict):
                        record = Damaged(number, "not a batch of rows", _preview(line))
                    if isinstance(record, Damaged):
                        damaged(record)
                    else:
                        write(record)
                    done += 1
            finally:
                rest = b"".join(line + b"\n" for line in lines[done:])
                if rest:  # over the start, then cut: needs no new space on a full disk
                    fh.seek(0)
                    fh.write(rest)
                    fh.truncate(len(rest))
                    fh.flush()
                    os.fsync(fh.fileno())
                else:  # appenders waiting on our lock notice and open a new file
                    self.path.unlink(missing_ok=True)
            return done
