"""What the cache records of a file: its object's name in an entry, sha256 and size, and the
one streaming digest every file is checked with (before a push, after a pull, by a folder
store's HEAD; the storyboard's image and hash memo use it too)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ObjectRecord:
    """One file of a cache entry. `path` is the object's name in the entry (``clip.mp4``), not
    a path on disk: a render names its own files when it pulls them."""

    path: str
    sha256: str
    size: int
    pixels: str | None = None  # a frame's pixel digest, from meta.json's `pixels`


def file_digest(path: Path) -> tuple[str, int]:
    """(sha256 hex, size) of a file as it is now, read in 1 MiB blocks; nothing memoised."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size
