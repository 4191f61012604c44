"""Input images: the limits every Hailuo 02 API shares, checked before anything is spent."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import time
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

# the one streaming hash loop; it sits with the cache, which may import nothing from here
from hailuo_pipe.cache.records import file_digest
from hailuo_pipe.paths import PathRefused, read_regular
from hailuo_pipe.state.lockfile import atomic_write

MAX_BYTES = 20 * 1024 * 1024
STORE_BYTES = 256 * 1024 * 1024  # .hashes.json: ~150 bytes a clip
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
    except ValueError:  # a NUL in the name: no file can have it
        raise ImageProblem(f"image file not found: {shown!r} contains a NUL character") from None
    if not path.is_file():
        raise ImageProblem(f"{shown} is not a file")
    if st.st_size > MAX_BYTES:
        raise ImageProblem(f"{path.name} is {st.st_size / 1e6:.1f} MB; the limit is 20 MB")
    return _inspect(path, st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=4096)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    return file_digest(path)[0]


def sha256_file(path: Path, st: os.stat_result | None = None) -> str:
    """Content hash of a file, memoised on (path, size, mtime) within one process, and between
    processes for files in a folder given to `remember_hashes`. `st` saves a second stat when
    the caller has just taken one."""
    st = st or path.stat()
    store = _STORES.get(path.parent)
    known = store.get(path.name, st) if store else None
    if known is not None:
        return known
    digest = _sha256(path, st.st_size, st.st_mtime_ns)
    if store:
        store.put(path.name, st, digest)
    return digest


def sha256_named(path: str, st: os.stat_result) -> str:
    """`sha256_file` of a path given as a string, with its `st`: what a rerun asks of each of
    its clips and frames, without making a Path of each."""
    folder, name = os.path.split(path)
    store = _BY_NAME.get(folder)
    if store is None or _STORES.get(store.folder) is not store:  # none yet, or forgotten
        store = _STORES.get(Path(folder))
        if store is not None:
            _BY_NAME[folder] = store
    known = store.get(name, st) if store else None
    if known is not None:
        return known
    return sha256_file(Path(path), st)


def remember_written(path: Path, digest: str) -> None:
    """Tell the memo of `path`'s folder (if it has one) the hash of a file just written there
    from bytes whose hash the writer computed: the next run need not read it again."""
    store = _STORES.get(path.parent)
    if store is not None:
        with contextlib.suppress(OSError):
            store.put(path.name, path.stat(), digest)


def remember_hashes(folder: Path) -> None:
    """Keep the hashes of files in `folder` in `folder/.hashes.json` between runs, trusted while
    a file's size, mtime, ctime and inode stay the same (as git's index does), so a rerun does
    not read every clip again. Written when the process exits; a lost file costs only time."""
    _STORES.setdefault(folder, _HashStore(folder / ".hashes.json"))


class _HashStore:
    RACY = 2.0  # seconds: a file this fresh may still change within its mtime's granularity
    # a filesystem whose timestamps have sub-second digits moves them on every kernel tick
    # (a few milliseconds): this long after its last change, a file's next change gets
    # another mtime
    TICK = 0.05

    def __init__(self, path: Path) -> None:
        self.path = path
        self.folder = path.parent
        self.dirty = False
        self.known: dict[str, list[Any]] = {}
        # hashed while fresh, on a filesystem with fine timestamps: kept when the process
        # exits if unchanged by then (a render's own clips and frames, so its first rerun
        # need not read them all again)
        self.fresh: dict[str, list[Any]] = {}
        # PathRefused: a FIFO or a link to /dev/zero there would hang or fill memory
        with contextlib.suppress(OSError, ValueError, PathRefused):
            data = json.loads(read_regular(path, STORE_BYTES, "hash store"))
            if isinstance(data, dict):
                self.known = {k: v for k, v in data.items() if isinstance(v, list) and len(v) == 5}

    @staticmethod
    def _stamp(st: os.stat_result) -> list[Any]:
        return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]

    def get(self, name: str, st: os.stat_result) -> str | None:
        got = self.known.get(name)
        return got[4] if got is not None and got[:4] == self._stamp(st) else None

    def put(self, name: str, st: os.stat_result, digest: str) -> None:
        if time.time() - st.st_mtime > self.RACY:
            self.known[name] = [*self._stamp(st), digest]
            self.fresh.pop(name, None)
            self.dirty = True
        elif st.st_mtime_ns % 1_000_000_000:  # whole seconds: a coarse filesystem's mtime
            self.fresh[name] = [*self._stamp(st), digest]

    def _settle(self) -> None:
        """Keep the fresh hashes of files unchanged since they were taken, once their mtime's
        tick is over: any later change moves the mtime, and the next run sees it. What this
        cannot see is a change by another program within that tick of the file being written
        (milliseconds), to a file in a render folder only a render, under its lock, writes."""
        now = time.time()
        for name, entry in self.fresh.items():
            try:
                st = os.stat(self.path.parent / name)
            except OSError:
                continue
            if self._stamp(st) == entry[:4] and now - st.st_mtime > self.TICK:
                self.known[name] = entry
                self.dirty = True
        self.fresh.clear()

    def save(self) -> None:
        if self.fresh:
            if time.time() - max(e[1] for e in self.fresh.values()) / 1e9 <= self.TICK:
                time.sleep(self.TICK)  # the last file written is still within its tick
            self._settle()
        if not self.dirty or not self.path.parent.is_dir():
            return
        live = {k: v for k, v in self.known.items() if (self.path.parent / k).exists()}
        with contextlib.suppress(OSError):
            atomic_write(self.path, json.dumps(live, sort_keys=True).encode())
        self.dirty = False


_STORES: dict[Path, _HashStore] = {}
_BY_NAME: dict[str, _HashStore] = {}  # the folder as a string: no Path made per file checked


@atexit.register
def _save_hashes() -> None:
    for store in _STORES.values():
        store.save()
