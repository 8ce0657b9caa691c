"""One writer at a time per output directory: a lease file with an owner, a heartbeat and an expiry.

A run takes the lease before it cleans up or writes anything, renews it while it
runs (a heartbeat thread), checks it before each step that makes its work visible,
and removes it when it ends. A second run finds the live lease and refuses to start,
naming the holder. A holder that was killed stops renewing: its lease expires after
`seconds` and the next run takes it over, at once where the holder ran on this
machine and its process is gone.

The lease is written with an atomic write (a temporary name, then a rename), then
read back after `SETTLE_SECONDS`: of two runs that both found no lease, the one whose
write was replaced by the other's sees a foreign token and backs off. This needs no
compare-and-swap, so it works alike on local disks and object stores, provided two
runs do not start within `SETTLE_SECONDS` of each other's read-back.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

LEASE_FILE = "_lease.json"
DEFAULT_SECONDS = 120.0  # a killed holder on another machine blocks the next run at most this long
SETTLE_SECONDS = 1.0
log = logging.getLogger(__name__)


class LeaseHeld(RuntimeError):
    """Another live run holds the lease; the message names it and how to take over."""


@dataclasses.dataclass(frozen=True)
class LeaseFiles:
    """How the lease file is read, written whole and removed on the directory's file system.

    Attributes:
        read: path -> text, or None if there is no such file.
        write: (path, text) written atomically (readers see the old text or the new, whole).
        remove: path removed (no error if absent).
    """

    read: Callable[[str], str | None]
    write: Callable[[str, str], None]
    remove: Callable[[str], None]


def _now() -> float:
    return time.time()


def _iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat(timespec="seconds")


def _alive_here(owner: dict) -> bool:
    """False where the holder ran on this machine and its process is gone (killed): the lease is stale."""
    if owner.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, ValueError):
        return True
    return True


class Lease:
    """The lease of one directory, held by this process from `acquire` to `release` (a context manager)."""

    def __init__(self, path: str, files: LeaseFiles, run: str, seconds: float = DEFAULT_SECONDS) -> None:
        self.path, self._files, self._seconds = path, files, seconds
        self.owner = {"run": run, "host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex}
        self._stop = threading.Event()
        self._lost: str | None = None
        self._heartbeat: threading.Thread | None = None

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, *_) -> None:
        self.release()

    def _current(self) -> dict | None:
        text = self._files.read(self.path)
        try:
            return json.loads(text) if text else None
        except json.JSONDecodeError:
            return None  # a torn write cannot happen with an atomic write; an edited file is no lease

    def _write(self) -> None:
        now = _now()
        lease = {**self.owner, "renewed_at": _iso(now), "expires_at": now + self._seconds, "seconds": self._seconds}
        self._files.write(self.path, json.dumps(lease, indent=2, sort_keys=True))

    def acquire(self) -> None:
        """Takes the lease, or raises `LeaseHeld` naming the live holder; then renews it every `seconds` / 4."""
        current = self._current()
        if current is not None and current.get("token") != self.owner["token"]:
            expired = current.get("expires_at", 0) <= _now()
            if not expired and _alive_here(current):
                raise LeaseHeld(self._held_message(current))
            why = "expired" if expired else "was held by a process of this machine that is gone"
            log.warning("taking over the lease of run %s (%s): %s", current.get("run"), why, self.path)
        self._write()
        time.sleep(SETTLE_SECONDS)
        current = self._current()
        if current is None or current.get("token") != self.owner["token"]:
            raise LeaseHeld(self._held_message(current or {}))
        self._heartbeat = threading.Thread(target=self._renew, name="lease-heartbeat", daemon=True)
        self._heartbeat.start()

    def _held_message(self, holder: dict) -> str:
        until = _iso(holder.get("expires_at", 0))
        return (
            f"another run writes here: run {holder.get('run')} on {holder.get('host')} (pid {holder.get('pid')}) "
            f"holds {self.path}, renewed at {holder.get('renewed_at')}, until {until}. Wait for it to finish; "
            f"if it is dead, its lease expires by itself at {until} (or delete {self.path} to take over now)"
        )

    def _renew(self) -> None:
        while not self._stop.wait(self._seconds / 4):
            current = self._current()
            if current is None or current.get("token") != self.owner["token"]:
                self._lost = f"the lease {self.path} was taken over by run {(current or {}).get('run')}"
                log.error("%s: this run will not publish", self._lost)
                return
            self._write()

    def check(self) -> None:
        """Raises `LeaseHeld` if this run lost its lease (it stalled past expiry and another run took over):
        called before a step that makes work visible, or deletes what another run may own."""
        current = self._current()
        if self._lost or current is None or current.get("token") != self.owner["token"]:
            raise LeaseHeld(self._lost or f"the lease {self.path} is no longer this run's: it stops here")

    def release(self) -> None:
        """Stops renewing and removes the lease, if it is still this run's."""
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        current = self._current()
        if current is not None and current.get("token") == self.owner["token"]:
            self._files.remove(self.path)
