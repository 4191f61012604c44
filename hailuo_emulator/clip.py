"""The clip every finished emulator job serves: a real, small H.264 MP4, made once."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

_lock = threading.Lock()
_cache: dict[tuple[str | None, int, int], bytes] = {}
WIDTH, HEIGHT, SECONDS = 160, 90, 1.0
# Real jobs never return the same clip twice; consecutive jobs serve different variants, so
# a re-rendered scene hands a different frame to the scenes chained to it.
VARIANTS = 16


def clip_bytes(clip_path: str | None = None, min_bytes: int = 0, seed: int = 0) -> bytes:
    """The bytes to serve: `clip_path` if given, else a synthetic clip padded to `min_bytes`."""
    key = (clip_path, min_bytes, 0 if clip_path else seed % VARIANTS)
    with _lock:
        found = _cache.get(key)
    if found is None:  # made outside the lock: one slow encode must not hold up every download
        made = Path(clip_path).read_bytes() if clip_path else _make(min_bytes, key[2])
        with _lock:
            found = _cache.setdefault(key, made)
    return found


_warming: threading.Thread | None = None


def warm(*, wait: bool = False) -> None:
    """Make the default variants ahead of the first downloads (about 50 ms each), in a thread;
    `wait` returns once they are made (a benchmark's clock must not count this CPU work)."""
    global _warming
    with _lock:
        if _warming is None:
            _warming = threading.Thread(
                target=lambda: [clip_bytes(seed=i) for i in range(VARIANTS)], daemon=True
            )
            _warming.start()
    if wait:
        _warming.join()


def _make(min_bytes: int, seed: int) -> bytes:
    # Imported here, in the warming thread: PyAV and Pillow would slow the server's start.
    from hailuo_emulator.synthetic import synthetic_clip

    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "clip.mp4"
        synthetic_clip(
            dest, width=WIDTH, height=HEIGHT, seconds=SECONDS, seed=seed, min_bytes=min_bytes
        )
        return dest.read_bytes()
