"""Paths a storyboard makes the program read or write, kept inside the storyboard's project.

The project is the folder of the spec and everything below it. A cloned repository can carry
symlinks, so one that resolves inside the project is fine; one that leads out of it (to
`/proc/self`, to a home folder, nowhere at all) or a special file (FIFO, device, socket) would
make the program read secrets, hang, or write over files it does not own, so it is refused.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from hailuo_pipe.errors import PathRefused

__all__ = ["PathRefused", "escape", "read_regular"]


def _inside(root: str, path: str) -> bool:
    try:
        return os.path.commonpath([root, path]) == root
    except ValueError:  # one absolute and one relative, or different drives
        return False


def escape(project: Path, path: Path, *, kind: str = "file") -> str | None:
    """Why `path` must not be used (None when it may): it is reached through a symlink that
    leads outside `project`, or it exists as something other than a `kind` ("file" or
    "folder"). A path that does not exist is fine: the caller decides what missing means.

    A path the spec wrote as outside the project (an absolute one) is the user's explicit
    choice and is only checked for being a special file."""
    try:
        root = os.path.realpath(project)
        lexical = os.path.normpath(os.path.join(root, path))
        real = os.path.realpath(lexical)
    except (ValueError, OSError):  # a NUL byte, a symlink loop: no file can be used there
        return "is not a usable path"
    if _inside(root, lexical) and not _inside(root, real):
        return f"leads outside the project folder {root} through a symlink (to {real})"
    try:
        st = os.stat(lexical)
    except FileNotFoundError:
        if os.path.islink(lexical):
            return f"is a symlink to {os.readlink(lexical)!r}, which does not exist"
        return None
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    wanted = stat.S_ISDIR if kind == "folder" else stat.S_ISREG
    if not wanted(st.st_mode):
        return f"is not a regular {kind} ({_kind_of(st.st_mode)})"
    return None


def _kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def read_regular(path: Path, limit: int, what: str) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, never reading more than that:
    a FIFO, a device such as /dev/zero or an oversized file is refused (PathRefused) without
    blocking on it or reading it whole. FileNotFoundError passes through."""
    # O_NONBLOCK: opening a FIFO that has no writer would otherwise wait forever
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PathRefused(
                path, f"the {what} is not a regular file ({_kind_of(st.st_mode)})"
            )
        if st.st_size > limit:
            raise PathRefused(
                path, f"the {what} is {st.st_size:,} bytes; at most {limit:,} are allowed"
            )
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:  # grew while we read it
            raise PathRefused(path, f"the {what} is more than {limit:,} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)
