"""Synthetic clips: real H.264 MP4s of a moving pattern that differs with a seed, standing in
for a provider's output in the emulator, the tests and the benchmarks (the product never makes
one). Encoded with the product's own writer, so they are what a provider's clip looks like.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Mapping
from pathlib import Path

from av.video.frame import VideoFrame
from PIL import Image, ImageDraw

from hailuo_pipe.media.av import FPS, atomic_write, check_size, writer

_FAST_X264 = {"preset": "ultrafast", "tune": "fastdecode"}


def synthetic_clip(
    dest: Path,
    *,
    width: int,
    height: int,
    seconds: float,
    fps: int = FPS,
    seed: int = 0,
    min_bytes: int = 0,
    x264: Mapping[str, str] | None = None,
) -> None:
    """A real H.264 MP4 of a moving pattern that differs with `seed`.

    `min_bytes` pads the file with a trailing MP4 `free` box (which every reader skips) so a
    benchmark can stand in for a large provider download without spending time encoding it.
    `x264` overrides the fast default encoder options (the benchmarks use x264's defaults).
    """
    check_size(width, height)
    frames = max(1, round(seconds * fps))
    pattern = _pattern(width, height, seed)
    speed = random.Random(seed).randint(3, 9)
    options = dict(x264) if x264 is not None else _FAST_X264

    def write(tmp: Path) -> None:
        with writer(tmp, width, height, fps, options) as out:
            for index in range(frames):
                out.put(VideoFrame.from_image(_pattern_frame(pattern, index, speed, width)))
        _pad(tmp, min_bytes)

    atomic_write(dest, write)


def _pattern(width: int, height: int, seed: int) -> Image.Image:
    """Colour bars over a gradient, twice the canvas wide so a window can pan across it."""
    rng = random.Random(seed)
    wide = Image.new("RGB", (width * 2, height))
    draw = ImageDraw.Draw(wide)
    bars = 12
    for bar in range(bars):
        colour = tuple(rng.randrange(40, 256) for _ in range(3))
        x0 = bar * wide.width // bars
        draw.rectangle((x0, 0, (bar + 1) * wide.width // bars, height), fill=colour)
    shade = Image.linear_gradient("L").rotate(rng.choice((0, 90, 180, 270))).resize(wide.size)
    wide = Image.composite(wide, Image.new("RGB", wide.size, (0, 0, 0)), shade)
    draw = ImageDraw.Draw(wide)
    for _ in range(24):
        cx, cy = rng.randrange(wide.width), rng.randrange(height)
        r = rng.randrange(height // 16 + 1, height // 4 + 2)
        colour = tuple(rng.randrange(256) for _ in range(3))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=colour, width=max(2, r // 8))
    return wide


def _pattern_frame(pattern: Image.Image, index: int, speed: int, width: int) -> Image.Image:
    """One frame: the pattern panning, with sprites moving independently of it (so motion
    search has real work, like ffmpeg's testsrc2) and a frame counter."""
    height = pattern.height
    x = (index * speed) % width
    frame = pattern.crop((x, 0, x + width, height))
    draw = ImageDraw.Draw(frame)
    size = max(4, height // 24)
    for sprite in range(48):
        phase = sprite * 0.7 + index * 0.004 * (1 + sprite % 5)
        cx = int(width * (0.5 + 0.45 * math.sin(phase * 1.3 + sprite)))
        cy = int(height * (0.5 + 0.45 * math.cos(phase + sprite * 2)))
        shade = (sprite * 53) % 256
        fill = (shade, (sprite * 97) % 256, 255 - shade)
        draw.ellipse((cx - size, cy - size, cx + size, cy + size), fill=fill)
    draw.text((8, 8), f"{index:05d}", fill=(255, 255, 0), font_size=max(10, height // 16))
    return frame


def _pad(path: Path, min_bytes: int) -> None:
    missing = min_bytes - path.stat().st_size
    if missing <= 0:
        return
    size = max(missing, 8)  # a box cannot be smaller than its own header
    if size >= 2**32:
        raise ValueError("min_bytes pads with one 32-bit MP4 box: at most 4 GiB of padding")
    with open(path, "ab") as handle:
        handle.write(struct.pack(">I4s", size, b"free"))
        # Random, not zeros, so nothing along the way can compress the padding away.
        handle.write(random.Random(size).randbytes(size - 8))
