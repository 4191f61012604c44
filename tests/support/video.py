"""Reading clips the slow, obvious way, to check the fast code against: a full decode with
PyAV, a PNG's pixels, how different two pictures look."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import av
from PIL import Image, ImageChops, ImageStat

# x264's own defaults (B-frames, CABAC), with one keyframe like a Hailuo clip.
ONE_KEYFRAME = {"g": "1000", "x264-params": "scenecut=0"}


def decode_all(path: Path) -> list[Image.Image]:
    with av.open(str(path)) as container:
        return [frame.to_image() for frame in container.decode(video=0)]


def picture_types(path: Path) -> Counter[str]:
    names = {1: "I", 2: "P", 3: "B"}  # AVPictureType
    with av.open(str(path)) as container:
        return Counter(names.get(int(f.pict_type), "?") for f in container.decode(video=0))


def pixels(path: Path) -> tuple[str, tuple[int, int], bytes]:
    with Image.open(path) as image:
        return image.mode, image.size, image.tobytes()


def difference(a: Image.Image, b: Image.Image, keep: float = 0.65) -> float:
    """Mean absolute difference per channel over the top part (above the caption band)."""
    box = (0, 0, a.width, int(a.height * keep))
    diff = ImageChops.difference(a.convert("RGB").crop(box), b.convert("RGB").crop(box))
    return sum(ImageStat.Stat(diff).mean) / 3
