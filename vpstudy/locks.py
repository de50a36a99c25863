"""Run-directory locks that a dead holder cannot keep, on any host.

A lock is a file ``<run dir>/lock`` holding its owner's pid, host, start time, a token and a
heartbeat (the time of its last beat). While a process holds it, a thread beats every
``HEARTBEAT_S`` seconds. Another process may take it over when

- its holder is on this host and its pid is gone (a SIGKILL, a crash), or
- its holder, on any host, has not beaten for ``STALE_AFTER_S`` seconds (a node that died,
  a process stopped, a pid reused after a reboot).

Every change of the lock file (create, take over, beat, release) happens under an exclusive
``flock`` of ``<run dir>/.lock-guard``, and the file is replaced by a rename, so of the
processes that find a lock stale at once exactly one takes it over, and a reader never sees a
half-written lock. A holder whose lock was taken over (it stopped beating for longer than
``STALE_AFTER_S``, then came back) notices at its next beat: :meth:`Lock.check_held` raises.

A lock written before heartbeats existed (``"<pid> <host>"``) is held while its pid lives on
this host; on another host it is held until deleted by hand, as it always was.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import secrets
import socket
import threading
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

HEARTBEAT_S = 30.0        # seconds between a holder's beats
STALE_AFTER_S = 300.0     # a lock not beaten for this long is taken over, whatever its host
GUARD = ".lock-guard"     # flock'ed around every change of the lock file (git-ignored in runs/)

_HELD: set[str] = set()   # tokens of the locks this process holds (one per acquisition)


# The run errors live here, the lowest layer that raises them; `vpstudy.runs` re-exports them.
class RunError(RuntimeError):
    """A run cannot go on (in use by another process, diverged); the message says what to do."""


class RunLockedError(RunError):
    """Another live process holds the run directory's lock."""


@dataclass(frozen=True)
class Holder:
    """What a lock file says about its owner (None where a legacy or garbled file does not say)."""

    pid: int | None
    host: str | None
    started: str | None = None
    beat: float | None = None          # time.time() of the last beat; None: a legacy lock
    token: str | None = None

    @classmethod
    def parse(cls, text: str) -> "Holder | None":
        """The holder a lock file's text names; None if it is garbled."""
        with suppress(ValueError, TypeError, AttributeError):
            d = json.loads(text)
            return cls(int(d["pid"]), str(d["host"]), d.get("started"), float(d["beat"]), str(d["token"]))
        with suppress(ValueError):
            pid, host = text.split()
            return cls(int(pid), host)
        return None

    def describe(self) -> str:
        where = f"pid {self.pid} on host {self.host}"
        if self.beat is None:
            return f"{where}; a lock without heartbeat, written by an older vpstudy"
        return f"{where}, started {self.started}, last beat {max(0.0, time.time() - self.beat):.0f} s ago"


def lock_text(pid: int, host: str, token: str, beat: float | None = None, started: str | None = None) -> str:
    """The content of a lock file (for :class:`Lock`, and for tests that fake another holder)."""
    return json.dumps({"pid": pid, "host": host, "token": token, "beat": time.time() if beat is None else beat,
                       "started": started or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}) + "\n"


class Lock:
    """The exclusive lock of one run directory (see the module's docstring)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.token: str | None = None         # set while this object holds the lock
        self.lost = False                     # set by the heartbeat when another process took it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- holding

    def __enter__(self) -> "Lock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(8)
        with self._guard():
            holder = self.holder()
            if self.path.exists() and not self._stale(holder):
                raise self.locked_error()
            self._write(token, replace=self.path.exists())
        self.token, self.lost = token, False
        _HELD.add(token)
        self._stop.clear()
        self._thread = threading.Thread(target=self._heartbeat, name=f"heartbeat {self.path}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        token, self.token = self.token, None
        _HELD.discard(token)
        with suppress(OSError), self._guard():      # only our own lock: the directory may have moved
            if self._file_token() == token:
                self.path.unlink()

    def beat(self) -> bool:
        """Refresh the heartbeat; False (and ``lost``) if the lock is no longer this object's."""
        try:
            with self._guard():
                if self.token is None or self._file_token() != self.token:
                    self.lost = True
                    return False
                self._write(self.token, replace=True, started=self.holder().started)
                return True
        except OSError:                              # the directory was moved aside or removed
            self.lost = True
            return False

    def check_held(self) -> None:
        """Raise :class:`RunLockedError` if another process has taken this lock over."""
        if self.lost:
            raise RunLockedError(
                f"the lock of {self.path.parent} was taken over by another process "
                f"({self.describe_holder()}) after this one missed its heartbeats for "
                f"{STALE_AFTER_S:.0f} s; this process stops without writing")

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            if not self.beat():
                return

    # ---- reading

    def holder(self) -> Holder | None:
        try:
            return Holder.parse(self.path.read_text())
        except OSError:
            return None

    def held_by_another(self) -> bool:
        """Whether a live lock exists that no lock of this process holds."""
        return self.path.exists() and not self._stale(self.holder()) and not self.mine()

    def mine(self) -> bool:
        """Whether a lock of this process (this object or another one) holds the file."""
        token = self._file_token()
        return token is not None and token in _HELD

    def locked_error(self) -> RunLockedError:
        return RunLockedError(
            f"run directory {self.path.parent} is in use by another process "
            f"({self.describe_holder()}); wait for it to finish. A holder that stops beating is "
            f"taken over after {STALE_AFTER_S:.0f} s; delete {self.path} if that process is gone")

    def describe_holder(self) -> str:
        holder = self.holder()
        return holder.describe() if holder else "holder unknown"

    def _file_token(self) -> str | None:
        holder = self.holder()
        return holder.token if holder else None

    def _stale(self, holder: Holder | None) -> bool:
        if holder is None:                           # garbled: stale unless being written by an old vpstudy
            return self._age() > 10.0
        if holder.host == socket.gethostname() and not _alive(holder.pid):
            return True
        if holder.beat is None:                      # legacy: its pid's liveness is all there is
            return False
        return time.time() - holder.beat > STALE_AFTER_S

    def _age(self) -> float:
        try:
            return time.time() - self.path.stat().st_mtime
        except OSError:
            return float("inf")

    # ---- writing (under the guard)

    @contextmanager
    def _guard(self) -> Iterator[None]:
        fd = os.open(self.path.with_name(GUARD), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)                             # closing releases the flock

    def _write(self, token: str, *, replace: bool, started: str | None = None) -> None:
        """Write this process's lock: a new file by link (fails if one appeared meanwhile, e.g.
        made by an older vpstudy without the guard), or replacing the stale one by rename."""
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(6)}.tmp")
        tmp.write_text(lock_text(os.getpid(), socket.gethostname(), token, started=started))
        try:
            if replace:
                os.replace(tmp, self.path)
            else:
                try:
                    os.link(tmp, self.path)
                except FileExistsError:
                    raise self.locked_error() from None
        finally:
            tmp.unlink(missing_ok=True)


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:                          # alive, owned by another user
        return True
    except (OverflowError, OSError):
        return False
    return True
