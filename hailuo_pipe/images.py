"""Input images: the limits every Hailuo 02 API shares, checked before anything is spent."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

from PIL import Image, UnidentifiedImageError

MAX_BYTES = 20 * 1024 * 1024
MIN_SHORT_SIDE = 300  # strictly above
MIN_ASPECT = Fraction(2, 5)  # strictly between 2:5 and 5:2
MAX_ASPECT = Fraction(5, 2)
FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png"}


@dataclass(frozen=True)
class ImageFacts:
    path: Path
    mime: str
    width: int
    height: int
    size: int


class ImageProblem(Exception):
    pass


@lru_cache(maxsize=4096)
def _inspect(path: Path, size: int, mtime_ns: int) -> ImageFacts:
    try:
        with Image.open(path) as img:
            fmt, (width, height) = img.format, img.size
    except UnidentifiedImageError:
        raise ImageProblem(f"{path.name} is not a JPG or PNG image") from None
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise ImageProblem(f"{path.name} cannot be read as an image: {err}") from None
    if fmt not in FORMATS:
        raise ImageProblem(f"{path.name} is a {fmt} image; the providers take JPG or PNG")
    if min(width, height) <= MIN_SHORT_SIDE:
        raise ImageProblem(
            f"{path.name} is {width}x{height}; its short side must be more than {MIN_SHORT_SIDE} px"
        )
    aspect = Fraction(width, height)
    if not MIN_ASPECT < aspect < MAX_ASPECT:
        raise ImageProblem(
            f"{path.name} is {width}x{height}; the aspect ratio must be between 2:5 and 5:2"
        )
    return ImageFacts(path, FORMATS[fmt], width, height, size)


def check(path: Path, shown: str = "") -> ImageFacts:
    """Facts about a local first/last frame; ImageProblem says what is wrong with it."""
    shown = shown or str(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageProblem(f"image file not found: {shown}") from None
    except OSError as err:
        raise ImageProblem(f"cannot read image {shown}: {err.strerror}") from None
    if not path.is_file():
        raise ImageProblem(f"{shown} is not a file")
    if st.st_size > MAX_BYTES:
        raise ImageProblem(f"{path.name} is {st.st_size / 1e6:.1f} MB; the limit is 20 MB")
    return _inspect(path, st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=4096)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """Content hash of a file, memoised on (path, size, mtime) within one process."""
    st = path.stat()
    return _sha256(path, st.st_size, st.st_mtime_ns)
