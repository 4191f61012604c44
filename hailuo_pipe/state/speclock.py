"""The render lock of one spec: two renders of it never interleave, and what a lock holder
loaded is folded back into its lockfile when the lock is released."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from hailuo_pipe.errors import LockfileError, LockHeldError


class Compactable(Protocol):
    def compact(self) -> None: ...


@contextlib.contextmanager
def exclusive(lock_path: Path, *, wait: bool = False) -> Iterator[None]:
    """Hold the render lock of one spec; refuse (or with `wait`, queue) if another has it."""
    mutex = lock_path.with_name(f".{lock_path.name}.pid")
    # never through a symlink: a committed `.NAME.lock.pid -> somefile` would be truncated and
    # overwritten with our pid; O_NONBLOCK so that a FIFO there cannot make us wait forever
    try:
        fd = os.open(
            mutex, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o666
        )
    except OSError as err:
        kind = "a symlink" if os.path.islink(mutex) else f"unusable ({err.strerror})"
        raise LockfileError(
            f"{mutex}: the render lock file is {kind}; delete it (it only holds the pid of a "
            "running render) and run again"
        ) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise LockfileError(
                f"{mutex}: the render lock file is not a regular file; delete it (it only "
                "holds the pid of a running render) and run again"
            )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            raise LockHeldError(
                f"{lock_path.name} is being rendered by process {holder}; "
                "wait for it to finish (two renders of one spec never "
                "interleave)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        _remove_stale_temps(lock_path)
        with _holding(lock_path):
            yield
    finally:
        os.close(fd)


# (lock path, thread) -> the lockfiles that thread loaded holding the lock: they fold their
# journals in as the lock is released, so a finished (or interrupted) render leaves only the
# lockfile. By thread: another thread of the process reading the lockfile meanwhile is a reader.
_HELD: dict[tuple[str, int], list[Compactable]] = {}


def _holder(lock_path: Path) -> tuple[str, int]:
    return os.path.abspath(lock_path), threading.get_ident()


@contextlib.contextmanager
def _holding(lock_path: Path) -> Iterator[None]:
    key = _holder(lock_path)
    _HELD[key] = []
    try:
        yield
    finally:
        for lock in _HELD.pop(key, []):
            # a rewrite that fails (a full disk) keeps the journal, which the next load replays
            with contextlib.suppress(LockfileError, OSError):
                lock.compact()


def held(lock_path: Path) -> list[Compactable] | None:
    """The lockfiles this thread loaded while holding `lock_path`'s lock; None when it holds
    no such lock (it is then a reader)."""
    return _HELD.get(_holder(lock_path))


def _remove_stale_temps(lock_path: Path) -> None:
    """Half-written lockfiles of a render killed mid-write: every write happens under the lock
    we now hold, so none of them is still being written."""
    for tmp in lock_path.parent.glob(f".{glob.escape(lock_path.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()
