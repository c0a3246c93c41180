"""One run per results folder: an OS file lock on ``<run>/.lock``, held for the run and released by the OS when the
process ends, crashed or not."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from bench.errors import UsageError

LOCK_NAME = ".lock"
#: Lock files this process holds, with how many RunLocks hold each (re-entrant within one process).
HELD: dict[Path, int] = {}


class RunLock:
    """An exclusive, non-blocking ``flock`` on a run folder's lock file, which holds the holder's pid.

    A second process taking it raises UsageError at once, naming the holder's pid; within one process it is
    re-entrant (the command line takes it before the heavy imports, the run takes it again). Workers of the holder
    (local processes, Slurm jobs) do not take it: they write into the folder on the holder's behalf.
    """

    def __init__(self, root: str | Path) -> None:
        self.path = (Path(root) / LOCK_NAME).absolute()
        self.fd: int | None = None
        self.nested = False
        self.created = False

    def acquire(self) -> None:
        if self.path in HELD:
            HELD[self.path] += 1
            self.nested = True
            return
        self.created = not self.path.parent.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UsageError(
                f"results folder {self.path.parent} is in use by another run (pid {holder}); wait for it to finish "
                "or give another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        HELD[self.path] = 1

    def release(self) -> None:
        if self.nested:
            HELD[self.path] -= 1
            self.nested = False
        elif self.fd is not None:
            del HELD[self.path]
            os.ftruncate(self.fd, 0)
            if self.created and [p.name for p in self.path.parent.iterdir()] == [LOCK_NAME]:
                self.path.unlink()  # a run that failed before writing anything leaves no folder behind
                self.path.parent.rmdir()
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()
