"""The lockfile's journal: the entry changes of a render, appended beside the lockfile.

Rewriting the whole lockfile at every state change costs O(scenes) per change, so a render of
10,000 scenes wrote gigabytes. A render appends instead one JSON line per changed entry to
`NAME.lock.journal` (fsync'd per group commit, so a change is durable before the render goes
on), and folds the journal into the lockfile once: when it releases the spec's lock, or, after a
crash, when the next writer loads it. What users commit stays the one sorted lockfile; a
finished render leaves no journal.

The file is a header line naming the lockfile it extends, then one line per change:

    {"base":"<sha256 of the lockfile's bytes, or null: there was none>","journal":1}
    {"entry":{...},"scene":"s0001"}

Crash-safe at any byte: each group commit is one append of whole lines, so a crash can only cut
the last line short (or, on a power loss, leave the unwritten tail as NUL bytes); whatever
follows the last newline, and anything from the first NUL byte on, was never acknowledged to
anyone and is ignored. A journal whose base is not the lockfile on disk is stale: either its
changes are already in the lockfile (a crash between the rewrite and the journal's removal) or
the lockfile was replaced on purpose (restored from git, deleted to forget every job); either way
it is ignored. Every other line must be valid, or the load fails with its line number.

This module knows lines and bytes; lockfile.py checks what the entries say.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hailuo_pipe.errors import LockfileError

VERSION = 1
SUFFIX = ".journal"


def journal_path(lock_path: Path) -> Path:
    return lock_path.with_name(lock_path.name + SUFFIX)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def header(base: str | None) -> bytes:
    return encode({"base": base, "journal": VERSION})


def line(scene_id: str, entry: dict[str, Any]) -> bytes:
    return encode({"entry": entry, "scene": scene_id})


def encode(value: dict[str, Any]) -> bytes:
    # no indent: JSON escapes every newline inside strings, so a line is exactly one record
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return (text + "\n").encode("utf-8")


@dataclass(frozen=True)
class Change:
    """One complete line of a journal: a scene's entry as it was recorded (unchecked)."""

    lineno: int
    scene: str
    entry: Any


@dataclass(frozen=True)
class Journal:
    base: str | None  # the digest of the lockfile it extends
    changes: tuple[Change, ...]


def parse(path: Path, data: bytes) -> Journal | None:
    """The journal in `data`, or None when not even its header was written whole. LockfileError,
    located at its line, for a line that no crash could have left."""
    nul = data.find(b"\0")
    if nul >= 0:  # a power loss's unwritten tail: nothing from here on was acknowledged
        data = data[:nul]
    complete = data[: data.rfind(b"\n") + 1]  # after the last newline: a line cut short
    lines = complete.splitlines()
    if not lines:
        return None
    head = _record(path, 1, lines[0])
    if head.get("journal") != VERSION:
        raise located(path, 1, f"journal format {head.get('journal')!r} is not {VERSION}")
    base = head.get("base")
    if base is not None and not isinstance(base, str):
        raise located(path, 1, "the header's base is not a digest")
    changes = []
    for lineno, raw in enumerate(lines[1:], start=2):
        record = _record(path, lineno, raw)
        scene = record.get("scene")
        if not isinstance(scene, str) or not scene:
            raise located(path, lineno, "the line names no scene")
        if "entry" not in record:
            raise located(path, lineno, f"the line for scene {scene!r} has no entry")
        changes.append(Change(lineno, scene, record["entry"]))
    return Journal(base, tuple(changes))


def _record(path: Path, lineno: int, raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise located(path, lineno, "the line is not UTF-8") from None
    except RecursionError:
        raise located(path, lineno, "the line is JSON nested too deep") from None
    except ValueError as err:  # JSONDecodeError, or an integer too long to convert
        raise located(path, lineno, f"the line is not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise located(path, lineno, "the line is not a JSON object")
    return value


def located(path: Path, lineno: int, why: str) -> LockfileError:
    return LockfileError(
        f"{path}:{lineno}: {why}; the journal holds the last render's changes to "
        f"{path.name.removesuffix(SUFFIX)}: fix or delete that line (deleting the journal "
        "forgets what that render recorded) — nothing is rendered until then"
    )


# O_NOFOLLOW: a committed `NAME.lock.journal -> somefile` must never be written through;
# O_NONBLOCK: opening a FIFO left there must fail, not wait forever for a reader
_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def append(path: Path, data: bytes, *, fresh: bool = False) -> None:
    """Append whole lines and fsync them; `fresh` starts the journal anew (its header first in
    `data`) and makes its name durable too. OSError when the disk refuses."""
    fd = os.open(path, _FLAGS | (os.O_CREAT | os.O_TRUNC if fresh else 0), 0o666)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:  # a short write (a signal, a nearly full disk) goes on where it stopped
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            # a full disk can take half a line: cut it off, or the next append would complete
            # it into a line no crash could leave, and the journal would no longer load
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)
    if fresh:
        sync_folder(path.parent)


def remove(path: Path) -> None:
    """Remove the journal once the lockfile holds what it said (durably: a journal that came
    back after a crash would be stale, and ignored, but not kept for nothing)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def exists(path: Path) -> bool:
    with contextlib.suppress(OSError):
        os.lstat(path)
        return True
    return False
