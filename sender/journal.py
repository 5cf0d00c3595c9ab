"""The sender's local journal: what it is about to send and what the gateway said, on disk first.

One append-only file of JSON lines per sender process, in `sender.journal_dir`
(off when empty), fsync'd after every line, held under an exclusive `flock`
while the process lives:

    {"ev": "open", "sender": "...", "database": "MySQL envios@db:3306/leadmaster"}
    {"ev": "sending", "envio_id": 7, "claimed_at": "2026-02-09T10:00:00"}        before the POST
    leaves
    {"ev": "said", "envio_id": 7, "claimed_at": ..., "outcome": "sent", ...}      before the
    database is written
    {"ev": "recorded", "envio_id": 7, "claimed_at": ...}                         after it committed

What that buys (DESIGN.md section 3 stays true: an unknown outcome is never guessed):

- A confirmed send whose database write failed is written as soon as the
  database answers again: by the running sender at its next tick, or by the next
  sender started on this machine, however long that takes.
- A row claimed by a sender that died before its "sending" line is known not
  sent: the next sender here puts it back to `pendiente`.
- A "sending" without a "said" stays `enviando` (unknown), with a note.
- A row claimed by a sender whose journal is not on this machine is left alone.

A journal is recovered only when no process holds its lock (its sender is
dead) and it names the same database; it is deleted once everything in it is
in the database.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import json
import os
import re
import threading
from pathlib import Path

from envios.sender.gateways.base import SendResult

SUFFIX = ".journal"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _stamp(value) -> str:
    return value.isoformat() if isinstance(value, dt.datetime) else str(value)


def key(envio_id: int, claimed_at) -> str:
    """One claim of one row: what journal lines and database rows are matched on."""
    return f"{int(envio_id)}@{_stamp(claimed_at)}"


class Journal:
    """This process's journal. Thread-safe; every line is on disk when a method returns."""

    def __init__(self, directory: str | os.PathLike, sender_id: str, database: str):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / (_UNSAFE.sub("_", sender_id) + SUFFIX)
        self.sender_id = sender_id
        self._lock = threading.Lock()
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held for the process's life
        fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.pending: dict[str, tuple[dict, SendResult]] = {}  # said, not yet recorded
        self.sent: set[str] = set()  # claims whose request may have left
        self._write({"ev": "open", "sender": sender_id, "database": database})
        _fsync_directory(self.directory)

    def _write(self, entry: dict) -> None:
        with self._lock:
            self._file.write(json.dumps(entry, default=str) + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())

    def sending(self, claimed) -> None:
        self._write(
            {
                "ev": "sending",
                "envio_id": claimed.envio_id,
                "claimed_at": _stamp(claimed.claimed_at),
            }
        )
        with self._lock:
            self.sent.add(key(claimed.envio_id, claimed.claimed_at))

    def said(self, claimed, result: SendResult) -> None:
        self._write(
            {
                "ev": "said",
                "envio_id": claimed.envio_id,
                "claimed_at": _stamp(claimed.claimed_at),
                "programacion_id": claimed.programacion_id,
                "cliente_id": claimed.cliente_id,
                "outcome": result.outcome.value,
                "message_id": result.message_id,
                "reason": result.reason,
                "retry_after_s": result.retry_after_s,
            }
        )
        with self._lock:
            self.pending[key(claimed.envio_id, claimed.claimed_at)] = (_claim_of(claimed), result)

    def recorded(self, claimed) -> None:
        self._write(
            {
                "ev": "recorded",
                "envio_id": claimed.envio_id,
                "claimed_at": _stamp(claimed.claimed_at),
            }
        )
        with self._lock:
            self.pending.pop(key(claimed.envio_id, claimed.claimed_at), None)

    def close(self) -> None:
        """Release the lock; the file is removed when nothing in it still needs the database."""
        with self._lock:
            if self._file.closed:
                return
            if not self.pending:
                with contextlib.suppress(OSError):
                    self.path.unlink()
            self._file.close()


def _claim_of(claimed) -> dict:
    return {
        "envio_id": claimed.envio_id,
        "claimed_at": claimed.claimed_at,
        "programacion_id": claimed.programacion_id,
        "cliente_id": claimed.cliente_id,
    }


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- reading a journal -----------------------------------------------------------------------------


@dataclasses.dataclass
class Reading:
    sender: str
    database: str
    sending: set[str]
    said: dict[str, dict]
    recorded: set[str]

    @property
    def unrecorded(self) -> dict[str, dict]:
        return {k: v for k, v in self.said.items() if k not in self.recorded}


def read(path: Path) -> Reading:
    reading = Reading("", "", set(), {}, set())
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line torn by a crash mid-write: it was never fsync'd, nothing relied on it
        ev = entry.get("ev")
        if ev == "open":
            reading.sender, reading.database = (
                str(entry.get("sender", "")),
                str(entry.get("database", "")),
            )
            continue
        claim = key(entry.get("envio_id", 0), entry.get("claimed_at"))
        if ev == "sending":
            reading.sending.add(claim)
        elif ev == "said":
            reading.said[claim] = entry
        elif ev == "recorded":
            reading.recorded.add(claim)
    return reading


def dead_journals(directory: str | os.PathLike) -> list[Path]:
    """Journals in `directory` whose process is gone (nobody holds their lock)."""
    found = []
    for path in sorted(Path(directory).glob("*" + SUFFIX)):
        try:
            with open(path, encoding="utf-8") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(handle, fcntl.LOCK_UN)
        except OSError:
            continue  # a live sender holds it
        found.append(path)
    return found
