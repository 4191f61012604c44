"""Clips in and out with PyAV: opening, probing, checking a provider's clip, the H.264 writer,
and the write-beside-then-rename every media output goes through.

Every failure to read a file becomes `MediaError` naming it. The atomic write (`atomic_write`,
its temporary names and their orphan sweep) is kept in this one section until the package has
one atomic write for all its files.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import av.container
import av.video
from av.video.frame import VideoFrame
from PIL import Image

from hailuo_pipe.errors import MediaError

# The frame size a provider's clip has at each resolution (16:9); the preview provider's too.
RESOLUTION_SIZES: dict[str, tuple[int, int]] = {
    "512p": (912, 512),
    "768p": (1366, 768),
    "1080p": (1920, 1080),
}

# Every clip this program writes looks like a provider's: H.264 in MP4, yuv420p, 25 fps.
CODEC = "libx264"
PIX_FMT = "yuv420p"
FPS = 25

# What a provider's clip may be: the codecs Hailuo 02's APIs deliver (and close kin)
CLIP_CODECS = frozenset({"h264", "hevc", "vp9", "av1"})
MAX_FPS = 120

_AV_ERRORS: tuple[type[BaseException], ...] = (av.FFmpegError, OSError, EOFError)


@dataclass(frozen=True)
class ClipInfo:
    codec: str
    width: int
    height: int
    fps: Fraction
    frames: int
    duration: float
    pix_fmt: str


# -- reading ---------------------------------------------------------------------------------


@contextmanager
def open_video(path: Path) -> Iterator[tuple[av.container.InputContainer, av.video.VideoStream]]:
    """Open a file's first video stream; every failure to read it is a MediaError."""
    try:
        container = av.open(str(path), mode="r")
    except FileNotFoundError:
        raise MediaError(f"video file not found: {path}") from None
    except _AV_ERRORS as err:
        raise MediaError(f"{path} cannot be read as a video: {reason(err)}") from None
    try:
        if not container.streams.video:
            raise MediaError(f"{path} has no video stream")
        yield container, container.streams.video[0]
    except _AV_ERRORS as err:
        raise MediaError(f"{path} cannot be decoded: {reason(err)}") from None
    finally:
        container.close()


def reason(err: BaseException) -> str:
    """An OS or FFmpeg error as the few words a MediaError ends with."""
    return getattr(err, "strerror", None) or str(err) or type(err).__name__


def shown_packets(
    container: av.container.InputContainer, stream: av.video.VideoStream
) -> list[av.Packet]:
    """The packets of a stream that are frames of the clip, in decode order."""
    # Demuxer flush packets are empty, and discarded ones (outside an MP4 edit list) are never
    # shown, so neither is a frame of the clip.
    return [p for p in container.demux(stream) if p.size and not p.is_discard]


def probe(path: Path) -> ClipInfo:
    """Facts about a clip; the frame count comes from its packets, not from its metadata."""
    with open_video(path) as (container, stream):
        packets = shown_packets(container, stream)
        ctx = stream.codec_context
        fps = Fraction(stream.average_rate or stream.guessed_rate or FPS)
        return ClipInfo(
            codec=ctx.name,
            width=ctx.width,
            height=ctx.height,
            fps=fps,
            frames=len(packets),
            duration=_duration(packets, stream, fps),
            pix_fmt=ctx.format.name if ctx.format else "",
        )


def _duration(packets: Sequence[av.Packet], stream: av.video.VideoStream, fps: Fraction) -> float:
    stamped = [p for p in packets if p.pts is not None]
    if not stamped or stream.time_base is None or len(stamped) != len(packets):
        return float(len(packets) / fps) if fps else 0.0
    start = min(p.pts for p in stamped if p.pts is not None)
    end = max((p.pts or 0) + (p.duration or 0) for p in stamped)
    return float((end - start) * stream.time_base)


def check_clip(path: Path, resolution: str, seconds: float) -> ClipInfo:
    """Refuse a downloaded file that is not the clip a `resolution` (e.g. "768p") and
    `seconds` request could give: no video stream, an odd codec (a PNG, raw frames), a frame
    far larger or far smaller than asked for, far longer or far shorter than paid for. Read
    from the headers and one packet at a time: a hostile file is refused before any frame of
    it is decoded. The margins are wide (a provider may crop or pad, trim a frame or two): what
    is refused is a clip that cannot be the one paid for, not one a little off."""
    rows = int(resolution.rstrip("p")) if resolution.rstrip("p").isdigit() else 1080
    # the short side is about `rows`, the long one up to ~2.4x it (21:9); generous margins
    short_max, long_max = rows * 1.25, rows * 3.0
    short_min = rows / 8
    seconds_max, seconds_min = seconds * 1.5 + 1.0, seconds * 0.5
    with open_video(path) as (container, stream):
        ctx = stream.codec_context
        if ctx.name not in CLIP_CODECS:
            raise MediaError(f"it is {ctx.name} data, not a video codec a provider delivers")
        width, height = ctx.width, ctx.height
        if not width or not height:
            raise MediaError("its video stream has no frame size")
        if min(width, height) > short_max or max(width, height) > long_max:
            raise MediaError(f"its frames are {width}x{height}, far larger than {resolution}")
        if min(width, height) < short_min:
            raise MediaError(f"its frames are {width}x{height}, far smaller than {resolution}")
        count, first, last = 0, None, None
        for packet in container.demux(stream):
            if not packet.size:
                continue
            count += 1
            if packet.pts is not None:
                first = packet.pts if first is None else min(first, packet.pts)
                last = packet.pts if last is None else max(last, packet.pts)
            if count > seconds_max * MAX_FPS:
                raise MediaError(f"it has more than {count - 1:,} frames")
        if not count:
            raise MediaError("its video stream has no frames")
        fps = Fraction(stream.average_rate or stream.guessed_rate or FPS)
        span = 0.0
        if first is not None and last is not None and stream.time_base:
            span = float((last - first) * stream.time_base)
        duration = max(span, float(count / fps) if fps else 0.0)
        if duration > seconds_max:
            raise MediaError(
                f"it lasts {duration:.1f} s, far longer than the {seconds:g} s paid for"
            )
        if duration < seconds_min:
            raise MediaError(
                f"it lasts {duration:.1f} s, far shorter than the {seconds:g} s paid for"
            )
        pix_fmt = ctx.format.name if ctx.format else ""
        return ClipInfo(ctx.name, width, height, fps, count, duration, pix_fmt)


# -- encoding --------------------------------------------------------------------------------


class Writer:
    """Encodes frames into an H.264 MP4, one frame per call, at a fixed rate."""

    def __init__(
        self,
        path: Path,
        width: int,
        height: int,
        fps: int | Fraction,
        options: Mapping[str, str],
    ) -> None:
        self._container = av.open(str(path), mode="w", format="mp4")
        self._stream = cast(
            av.video.stream.VideoStream,
            self._container.add_stream(CODEC, rate=fps, options=dict(options)),
        )
        self._stream.width = width
        self._stream.height = height
        self._stream.pix_fmt = PIX_FMT
        self._time_base = Fraction(1) / Fraction(fps)
        self.count = 0

    def put(self, frame: VideoFrame) -> None:
        frame.pts = self.count
        frame.time_base = self._time_base
        self._container.mux(self._stream.encode(frame))
        self.count += 1

    def close(self) -> None:
        self._container.mux(self._stream.encode(None))
        self._container.close()

    def abort(self) -> None:
        self._container.close()


@contextmanager
def writer(
    path: Path, width: int, height: int, fps: int | Fraction, options: Mapping[str, str]
) -> Iterator[Writer]:
    """A `Writer` on `path` (x264 `options`), flushed on leaving, closed unflushed on error."""
    out = Writer(path, width, height, fps, options)
    try:
        yield out
    except BaseException:
        out.abort()
        raise
    out.close()


def check_size(width: int, height: int) -> None:
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError(f"H.264 yuv420p needs positive even dimensions, not {width}x{height}")


def to_yuv(image: Image.Image) -> VideoFrame:
    """An RGB image as an encoder-ready frame: converting once lets repeated frames share it."""
    return VideoFrame.from_image(image).reformat(format=PIX_FMT)


# -- the atomic write of every media output --------------------------------------------------


def atomic_write(dest: Path, write: Callable[[Path], object], *, durable: bool = True) -> None:
    """Run `write` on a temporary path beside `dest`, then rename it over `dest`: a reader never
    sees half a clip or half a frame. FFmpeg and OS errors become MediaError. Not `durable`:
    no fsync, for a file a crash may lose because it can be made again."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(dest.parent)
    # Named, not created, here: the writer creates it, with the usual permissions.
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        write(tmp)
        if durable:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, dest)
    except _AV_ERRORS as err:
        tmp.unlink(missing_ok=True)
        raise MediaError(f"cannot write {dest}: {reason(err)}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_TEMP_NAME = re.compile(r"\.(.+)\.(\d+)\.[0-9a-f]{8}\.tmp")  # as atomic_write names them
_SWEPT: set[Path] = set()


def _remove_orphans(folder: Path) -> None:
    """Temporary files in `folder` whose writer was killed (the pid in the name is gone), looked
    for once per folder and process: a look per file written made writing the frames of N
    scenes read the folder N times."""
    if folder in _SWEPT:
        return
    _SWEPT.add(folder)
    for tmp in folder.glob(".*.tmp"):
        found = _TEMP_NAME.fullmatch(tmp.name)
        if found and not _alive(int(found.group(2))):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but is someone else's
        return True
    return True
