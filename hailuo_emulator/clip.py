"""The clip a finished emulator job serves: a real H.264 MP4 of the length the request paid
for, small but in proportion to its resolution, made once per variant and shape.

Kept cheap (5 frames a second, a sixth of the resolution's rows) so a test suite of renders does
not spend its time encoding, yet whole enough that a client's checks of what it was delivered
(the clip's length, its frame size) see what a real provider would send.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

_lock = threading.Lock()
_cache: dict[tuple[str | None, int, int, str, int], bytes] = {}
FPS = 5
# a coarse quantizer: a few tens of KB a clip, so loopback downloads stay as cheap as before
X264 = {"preset": "ultrafast", "tune": "fastdecode", "crf": "45"}
ROWS = {"512p": 512, "768p": 768, "1080p": 1080}
# Real jobs never return the same clip twice; consecutive jobs serve different variants, so
# a re-rendered scene hands a different frame to the scenes chained to it.
VARIANTS = 16


def clip_bytes(
    clip_path: str | None = None,
    min_bytes: int = 0,
    seed: int = 0,
    resolution: str = "768p",
    seconds: int = 6,
) -> bytes:
    """The bytes to serve: `clip_path` if given, else a synthetic clip padded to `min_bytes`."""
    key: tuple[str | None, int, int, str, int]
    if clip_path:
        key = (clip_path, min_bytes, 0, "", 0)
    else:
        key = (None, min_bytes, seed % VARIANTS, resolution, seconds)
    with _lock:
        found = _cache.get(key)
    if found is None:  # made outside the lock: one slow encode must not hold up every download
        made = (
            Path(clip_path).read_bytes()
            if clip_path
            else _make(min_bytes, key[2], resolution, seconds)
        )
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


def size_of(resolution: str) -> tuple[int, int]:
    """16:9 at a sixth of the resolution's rows, in even numbers (what H.264 4:2:0 needs)."""
    short = ROWS.get(resolution, 768) // 6 // 2 * 2
    return short * 16 // 9 // 2 * 2, short


def _make(min_bytes: int, seed: int, resolution: str, seconds: int) -> bytes:
    # Imported here, in the warming thread: PyAV and Pillow would slow the server's start.
    from hailuo_emulator.synthetic import synthetic_clip

    width, height = size_of(resolution)
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "clip.mp4"
        synthetic_clip(
            dest,
            width=width,
            height=height,
            seconds=seconds,
            fps=FPS,
            x264=X264,
            seed=seed,
            min_bytes=min_bytes,
        )
        return dest.read_bytes()
