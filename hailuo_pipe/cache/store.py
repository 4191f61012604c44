"""What a cache is kept in: the few primitives both backends provide (`Store`), and the names
the cache gives what it keeps there.

Keys are relative to the cache's root and named by a scene's fingerprint (``sha256:HEX``)::

    clips/<hex>/clip.mp4, first.png, last.png   an entry's files (uploaded first)
    clips/<hex>/meta.json                       written LAST: an entry without it is a miss
    leases/<hex>.json                           who is generating <hex> right now
"""

from __future__ import annotations

import getpass
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from hailuo_pipe.errors import CacheError

FORMAT_VERSION = 1  # of meta.json and of lease objects
_FINGERPRINT = re.compile(r"sha256:([0-9a-f]{64})")


class PreconditionFailed(Exception):
    """A store's conditional write did not hold (internal signal, never shown to a user)."""


class Store(Protocol):
    url: str

    def get(self, key: str) -> tuple[bytes, str] | None:
        """(content, etag), or None when the key does not exist."""

    def put(
        self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None
    ) -> str:
        """Write and return the new etag; PreconditionFailed when a condition does not hold."""

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        """Remove (a missing key is fine); PreconditionFailed when `if_match` does not hold."""

    def upload(self, key: str, path: Path, sha256: str) -> None: ...

    def download(self, key: str, dest: Path, size: int | None = None) -> None:
        """Copy the object to `dest` (`size`, when known, lets a backend pick its method)."""

    def head(self, key: str) -> tuple[int, str | None] | None:
        """(size, sha256 recorded at upload or None), or None when the key does not exist."""

    def list(self, prefix: str) -> Iterator[tuple[str, float]]:
        """(key, modified epoch seconds) of every key under `prefix`."""

    def check(self) -> None:
        """Raise CacheError when the cache cannot be reached or used."""


def hex_of(fingerprint: str) -> str:
    """The hex digits that name a scene's keys; CacheError for anything else (a fingerprint
    from outside must never become a path such as ``../../etc/passwd``)."""
    match = _FINGERPRINT.fullmatch(fingerprint)
    if not match:
        raise CacheError(f"not a scene fingerprint (sha256:<64 hex digits>): {fingerprint!r}")
    return match.group(1)


def short(fingerprint: str) -> str:
    """A fingerprint as messages show it."""
    return fingerprint[:19] + "…" if len(fingerprint) > 20 else fingerprint


def default_holder() -> str:
    """``user@host:pid``: who holds a lease, and who pushed an entry."""
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}:{os.getpid()}"
