"""Writing the files beside a spec: whole or not at all, and the timestamps they record."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO


def iso(epoch: float) -> str:
    """The one timestamp format of lockfiles, cache entries and leases (UTC, to the second)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now() -> str:
    return iso(time.time())


def create_temp(path: Path) -> tuple[int, Path]:
    """A new temporary file beside `path`, open for writing, made as `open()` makes a file
    (0666 under the umask), not mkstemp's 0600: a lockfile or a saved plan is committed and
    read by others, a shared cache's objects by a whole team."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.open(tmp, flags, 0o666), tmp


def write_temp(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """A durable temporary file beside `path`, written through the descriptor that created it
    (never reopened by name, which a symlink put there meanwhile could redirect)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write(path: Path, data: bytes) -> None:
    """Write a file so that a crash leaves either the old or the new content, never a mix."""
    tmp = write_temp(path, lambda f: f.write(data))
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
