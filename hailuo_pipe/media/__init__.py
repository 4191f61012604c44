"""Video and image work on this machine: probe, frame extraction, animatics, stitching.

Everything here reads and writes real files with PyAV and Pillow. Bad input files become
`MediaError` with a message naming the file; outputs are written to a temporary file beside the
destination and renamed into place, so a reader never sees half a clip or half a frame.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import re
import secrets
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal, cast

import av
import av.container
import av.stream
import av.video
from av.video.frame import VideoFrame
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from hailuo_pipe.errors import MediaError

RESOLUTION_SIZES: dict[str, tuple[int, int]] = {
    "512p": (912, 512),
    "768p": (1366, 768),
    "1080p": (1920, 1080),
}

# Every clip this program writes looks like a provider's: H.264 in MP4, yuv420p, 25 fps.
CODEC = "libx264"
PIX_FMT = "yuv420p"
FPS = 25

_AV_ERRORS: tuple[type[BaseException], ...] = (av.FFmpegError, OSError, EOFError)
_DARK = (18, 20, 26)


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
def _open_video(path: Path) -> Iterator[tuple[av.container.InputContainer, av.video.VideoStream]]:
    """Open a file's first video stream; every failure to read it is a MediaError."""
    try:
        container = av.open(str(path), mode="r")
    except FileNotFoundError:
        raise MediaError(f"video file not found: {path}") from None
    except _AV_ERRORS as err:
        raise MediaError(f"{path} cannot be read as a video: {_reason(err)}") from None
    try:
        if not container.streams.video:
            raise MediaError(f"{path} has no video stream")
        yield container, container.streams.video[0]
    except _AV_ERRORS as err:
        raise MediaError(f"{path} cannot be decoded: {_reason(err)}") from None
    finally:
        container.close()


def _reason(err: BaseException) -> str:
    return getattr(err, "strerror", None) or str(err) or type(err).__name__


def _packets(
    container: av.container.InputContainer, stream: av.video.VideoStream
) -> list[av.Packet]:
    # Demuxer flush packets are empty, and discarded ones (outside an MP4 edit list) are never
    # shown, so neither is a frame of the clip.
    return [p for p in container.demux(stream) if p.size and not p.is_discard]


def probe(path: Path) -> ClipInfo:
    """Facts about a clip; the frame count comes from its packets, not from its metadata."""
    with _open_video(path) as (container, stream):
        packets = _packets(container, stream)
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


# What a provider's clip may be: the codecs Hailuo 02's APIs deliver (and close kin)
CLIP_CODECS = frozenset({"h264", "hevc", "vp9", "av1"})
MAX_FPS = 120


def check_clip(path: Path, resolution: str, seconds: float) -> ClipInfo:
    """Refuse a downloaded file that is not the clip a `resolution` (e.g. "768p") and
    `seconds` request could give: no video stream, an odd codec (a PNG, raw frames), a frame
    far larger than asked for, or far longer than paid for. Read from the headers and one
    packet at a time: a hostile file is refused before any frame of it is decoded."""
    rows = int(resolution.rstrip("p")) if resolution.rstrip("p").isdigit() else 1080
    # the short side is about `rows`, the long one up to ~2.4x it (21:9); generous margins
    short_max, long_max = rows * 1.25, rows * 3.0
    seconds_max = seconds * 1.5 + 1.0
    with _open_video(path) as (container, stream):
        ctx = stream.codec_context
        if ctx.name not in CLIP_CODECS:
            raise MediaError(f"it is {ctx.name} data, not a video codec a provider delivers")
        width, height = ctx.width, ctx.height
        if not width or not height:
            raise MediaError("its video stream has no frame size")
        if min(width, height) > short_max or max(width, height) > long_max:
            raise MediaError(f"its frames are {width}x{height}, far larger than {resolution}")
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
        pix_fmt = ctx.format.name if ctx.format else ""
        return ClipInfo(ctx.name, width, height, fps, count, duration, pix_fmt)


def extract_frame(video: Path, which: Literal["first", "last"], dest: Path) -> None:
    """Write the first or last frame of `video` as an RGB PNG, exactly as a full decode has it."""
    extract_frames(video, {which: dest})


def extract_frames(video: Path, dests: Mapping[str, Path]) -> dict[str, str]:
    """Write the first and/or last frame of `video` ("first"/"last" -> PNG path), exactly as a
    full decode has them, and return each one's `pixel_digest`."""
    images = edge_images(video, tuple(dests))
    for which, dest in dests.items():
        _write_png(images[which], dest)
    return {which: pixel_digest(image) for which, image in images.items()}


def edge_images(video: Path, wanted: Sequence[str]) -> dict[str, Image.Image]:
    """The first and/or last frame of `video` as RGB images. The last frame's decoding pass
    gives the first one too, when it decoded it: one open and one decode for both."""
    with _open_video(video) as (container, stream):
        if "last" in wanted:
            first, last = _edge_frames(container, stream)
        else:
            first, last = _first_frame(container, stream), None
    if "first" in wanted and first is None:  # the pass skipped or started after it
        with _open_video(video) as (container, stream):
            first = _first_frame(container, stream)
    found = {"first": first, "last": last}
    images = {}
    for which in wanted:
        frame = found[which]
        if frame is None:
            raise MediaError(f"{video} has no decodable frame")
        images[which] = _rgb(frame)
    return images


def pixel_digest(image: Image.Image) -> str:
    """What a frame *is*, whatever file encodes it: a hash of its size and RGB pixels. A chained
    scene's fingerprint takes this, so a new PNG encoder never makes it look changed."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    digest = hashlib.sha256(f"rgb {rgb.width}x{rgb.height}\n".encode())
    digest.update(rgb.tobytes())
    return "pixels:" + digest.hexdigest()


def png_pixels(path: Path) -> str:
    """`pixel_digest` of an image file; MediaError when it cannot be read."""
    try:
        with Image.open(path) as image:
            return pixel_digest(image)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise MediaError(f"cannot read frame {path.name}: {err}") from None


def _write_png(image: Image.Image, dest: Path) -> None:
    # zlib level 1: several times faster than Pillow's default for a few percent more bytes.
    # Not fsync'd: a frame is re-derivable from its clip (which is), and a frame a crash left
    # empty or short no longer matches its recorded size and sha256, so the next plan restores
    # it from the clip for free.
    save = lambda tmp: image.save(tmp, format="PNG", compress_level=1)  # noqa: E731
    _atomic_write(dest, save, durable=False)


def _rgb(frame: VideoFrame) -> Image.Image:
    """The frame as RGB, with the same conversion as `VideoFrame.to_image()`, but read straight
    from the converted plane instead of row by row in Python."""
    plane = frame.reformat(format="rgb24").planes[0]
    if plane.line_size < 0:
        return frame.to_image()
    size = (plane.width, plane.height)
    return Image.frombuffer("RGB", size, bytes(plane), "raw", "RGB", plane.line_size, 1)


def _first_frame(
    container: av.container.InputContainer, stream: av.video.VideoStream
) -> VideoFrame | None:
    for frame in container.decode(stream):
        return frame
    return None


THREADED_DECODE_FROM = 1280 * 720 * 25  # pixels decoded: a second of 720p


def _edge_frames(
    container: av.container.InputContainer, stream: av.video.VideoStream
) -> tuple[VideoFrame | None, VideoFrame | None]:
    """The last frame in display order, decoding only what it depends on, and the first one
    when that pass decoded it (else None).

    A Hailuo clip has a single keyframe, so seeking cannot help; instead the frames no other
    frame refers to (non-reference B frames) are skipped, which cannot change any reference
    frame. The shown frame with the highest timestamp may itself be such a B frame, so full
    decoding resumes at its packet (in decode order) to keep the result exact. Clips with
    several keyframes start at the last H.264 IDR picture, before which nothing is needed.
    The first frame is the one with the lowest timestamp: exact when the pass started at the
    first packet and did not skip it.
    """
    packets = _packets(container, stream)
    if not packets:
        return None, None
    ctx = stream.codec_context
    # decoding threads pay for themselves on a real clip; on a small one starting them costs
    # more than decoding (twice the CPU for a second of 160x90)
    pixels = (ctx.width or 0) * (ctx.height or 0) * len(packets)
    ctx.thread_type = "AUTO" if pixels >= THREADED_DECODE_FROM else "NONE"
    start, target = 0, 0  # without timestamps the display order is unknown: decode everything
    timed = all(p.pts is not None for p in packets)
    if timed:
        target = max(range(len(packets)), key=lambda i: (packets[i].pts, i))
        start = _last_idr(packets, stream, before=target)
        ctx.skip_frame = "NONREF"
    first: VideoFrame | None = None
    last: VideoFrame | None = None
    for index, packet in enumerate([*packets[start:], None], start):
        if index == target:
            ctx.skip_frame = "DEFAULT"
        for frame in ctx.decode(packet):
            if first is None or (
                timed and frame.pts is not None and first.pts is not None and frame.pts < first.pts
            ):
                first = frame
            if last is None or _later(frame, last):
                last = frame
    earliest = min(p.pts or 0 for p in packets) if timed else None
    if start != 0 or first is None or (timed and first.pts != earliest):
        first = None
    return first, last


def _last_idr(packets: Sequence[av.Packet], stream: av.video.VideoStream, before: int) -> int:
    """The index of the last H.264 IDR packet at or before `before`, or 0.

    An IDR picture empties the decoder's reference list, so decoding from it gives the frames
    that follow exactly as decoding from the start would.
    """
    extradata = stream.codec_context.extradata or b""
    if stream.codec_context.name != "h264" or len(extradata) < 5 or extradata[0] != 1:
        return 0  # not length-prefixed H.264 (avcC): no cheap way to tell an IDR
    length_size = (extradata[4] & 3) + 1
    for index in range(before, 0, -1):
        if packets[index].is_keyframe and _has_idr(bytes(packets[index]), length_size):
            return index
    return 0


def _has_idr(data: bytes, length_size: int) -> bool:
    position = 0
    while position + length_size < len(data):
        size = int.from_bytes(data[position : position + length_size], "big")
        if data[position + length_size] & 0x1F == 5:  # nal_unit_type 5: IDR slice
            return True
        position += length_size + size
    return False


def _later(frame: VideoFrame, than: VideoFrame) -> bool:
    if frame.pts is None or than.pts is None:
        return True  # decoder output order is display order
    return frame.pts >= than.pts


# -- writing ---------------------------------------------------------------------------------


def _atomic_write(dest: Path, write: Callable[[Path], None], *, durable: bool = True) -> None:
    """Run `write` on a temporary path beside `dest`, then rename it over `dest` (after an
    fsync, unless a crash may lose the file because it can be made again)."""
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
        raise MediaError(f"cannot write {dest}: {_reason(err)}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_TEMP_NAME = re.compile(r"\.(.+)\.(\d+)\.[0-9a-f]{8}\.tmp")  # as _atomic_write names them
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


class _Writer:
    """Encodes RGB images or frames into an H.264 MP4, one frame per call, at a fixed rate."""

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
def _writer(
    path: Path, width: int, height: int, fps: int | Fraction, options: Mapping[str, str]
) -> Iterator[_Writer]:
    writer = _Writer(path, width, height, fps, options)
    try:
        yield writer
    except BaseException:
        writer.abort()
        raise
    writer.close()


def _yuv(image: Image.Image) -> VideoFrame:
    """An RGB image as an encoder-ready frame: converting once lets repeated frames share it."""
    return VideoFrame.from_image(image).reformat(format=PIX_FMT)


# -- synthetic clips (the emulator's and the benchmarks' provider output) ----------------------

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
    _check_size(width, height)
    frames = max(1, round(seconds * fps))
    pattern = _pattern(width, height, seed)
    speed = random.Random(seed).randint(3, 9)
    options = dict(x264) if x264 is not None else _FAST_X264

    def write(tmp: Path) -> None:
        with _writer(tmp, width, height, fps, options) as out:
            for index in range(frames):
                out.put(VideoFrame.from_image(_pattern_frame(pattern, index, speed, width)))
        _pad(tmp, min_bytes)

    _atomic_write(dest, write)


def _check_size(width: int, height: int) -> None:
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError(f"H.264 yuv420p needs positive even dimensions, not {width}x{height}")


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


# -- stills ----------------------------------------------------------------------------------


def _load_image(path: Path) -> Image.Image:
    """A local image as upright RGB; transparency is laid on the dark background."""
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                backdrop = Image.new("RGBA", image.size, (*_DARK, 255))
                return Image.alpha_composite(backdrop, image.convert("RGBA")).convert("RGB")
            return image.convert("RGB")
    except FileNotFoundError:
        raise MediaError(f"image file not found: {path}") from None
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise MediaError(f"{path} cannot be read as an image: {_reason(err)}") from None


def _still(source: Path | str | None, width: int, height: int) -> Image.Image | None:
    if source is None:
        return None
    if isinstance(source, str):
        return _url_card(source, width, height)
    return _fit(_load_image(source), width, height)


def _fit(image: Image.Image, width: int, height: int) -> Image.Image:
    """Fill the canvas: crop when the shapes are close, otherwise letterbox over a blurred copy
    (cropping a portrait photo to 16:9 would cut away most of it)."""
    mismatch = abs(math.log((image.width / image.height) / (width / height)))
    if mismatch < math.log(1.25):
        return ImageOps.fit(image, (width, height), Image.Resampling.BICUBIC)
    small = ImageOps.fit(image, (max(1, width // 16), max(1, height // 16)))
    backdrop = small.filter(ImageFilter.GaussianBlur(2)).resize((width, height))
    backdrop = Image.blend(Image.new("RGB", (width, height), _DARK), backdrop, 0.45)
    inner = ImageOps.contain(image, (width, height), Image.Resampling.BICUBIC)
    backdrop.paste(inner, ((width - inner.width) // 2, (height - inner.height) // 2))
    return backdrop


def _font(size: int) -> ImageFont.FreeTypeFont:
    # Pillow >= 10.1 ships a scalable default font: `size` is honoured
    return cast(ImageFont.FreeTypeFont, ImageFont.load_default(size=size))


def _wrap(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> list[str]:
    """Break `text` into lines no wider than `width` pixels, splitting words too long for one."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            while len(word) > 1 and font.getlength(word) > width:
                cut = _fitting(word, font, width)
                if line:
                    lines.append(line)
                lines.append(word[:cut])
                line, word = "", word[cut:]
            candidate = f"{line} {word}" if line else word
            if line and font.getlength(candidate) > width:
                lines.append(line)
                candidate = word
            line = candidate
        lines.append(line)
    return lines


def _fitting(word: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> int:
    """How many leading characters of `word` fit in `width` pixels (at least one)."""
    low, high = 1, len(word)
    while low < high:
        middle = (low + high + 1) // 2
        if font.getlength(word[:middle]) <= width:
            low = middle
        else:
            high = middle - 1
    return low


def _clip_lines(lines: list[str], limit: int) -> list[str]:
    if len(lines) <= limit:
        return lines
    return [*lines[: limit - 1], lines[limit - 1].rstrip() + " …"]


def _url_card(url: str, width: int, height: int) -> Image.Image:
    """What a preview shows for an image it is not allowed to fetch: the address itself."""
    card = Image.new("RGB", (width, height), (34, 38, 48))
    draw = ImageDraw.Draw(card)
    margin = width // 12
    draw.rectangle(
        (margin // 2, margin // 2, width - margin // 2, height - margin // 2),
        outline=(90, 98, 118),
        width=max(2, height // 200),
    )
    title = _font(max(12, height // 18))
    body = _font(max(10, height // 28))
    draw.text((margin, margin), "remote image (not fetched)", font=title, fill=(200, 206, 220))
    y = margin + int(title.size * 1.8)
    for line in _clip_lines(_wrap(url, body, width - 2 * margin), 6):
        draw.text((margin, y), line, font=body, fill=(150, 200, 255))
        y += int(body.size * 1.35)
    return card


def _dark_card(width: int, height: int) -> Image.Image:
    card = Image.linear_gradient("L").resize((width, height)).point(lambda v: 14 + v // 12)
    return Image.merge("RGB", (card, card, card.point(lambda v: v + 6)))


# Per-frame work happens on the planes of yuv420p frames: scaling with swscale and blending or
# compositing each plane as an 8-bit Pillow image is several times faster than doing it in RGB
# and converting every frame.


def _planes(frame: VideoFrame) -> list[Image.Image]:
    """The planes of a yuv420p frame as 8-bit images, each as wide as the plane's stride."""
    return [Image.frombytes("L", (p.line_size, p.height), bytes(p)) for p in frame.planes]


def _from_planes(planes: Sequence[Image.Image], width: int, height: int) -> VideoFrame:
    frame = VideoFrame(width, height, PIX_FMT)
    for plane, image in zip(frame.planes, planes, strict=True):
        if image.size != (plane.line_size, plane.height):
            image = image.crop((0, 0, plane.line_size, plane.height))
        plane.update(image.tobytes())
    return frame


@dataclass(frozen=True)
class _Overlay:
    """A translucent band laid over frames, both as RGB (for stills) and per yuv420p plane."""

    rgb: Image.Image
    mask: Image.Image
    top: int  # even, so the band starts on a chroma row
    # per plane: the band's values and its opacity, at that plane's resolution
    planes: tuple[tuple[Image.Image, Image.Image], ...]

    @classmethod
    def make(cls, band: Image.Image, top: int) -> _Overlay:
        rgb, mask = band.convert("RGB"), band.getchannel("A")
        yuv = _yuv(rgb).planes
        half = mask.resize((mask.width // 2, mask.height // 2), Image.Resampling.BOX)
        planes = tuple(
            (Image.frombytes("L", (p.line_size, p.height), bytes(p)).crop((0, 0, *m.size)), m)
            for p, m in zip(yuv, (mask, half, half), strict=True)
        )
        return cls(rgb, mask, top, planes)

    def on_image(self, image: Image.Image) -> Image.Image:
        image = image.copy()
        image.paste(self.rgb, (0, self.top), self.mask)
        return image

    def on_frame(self, frame: VideoFrame) -> VideoFrame:
        for index, (plane, (values, mask)) in enumerate(
            zip(frame.planes, self.planes, strict=True)
        ):
            stride, rows = plane.line_size, mask.height
            start = (self.top if index == 0 else self.top // 2) * stride
            view = memoryview(plane)[start : start + rows * stride]
            region = Image.frombytes("L", (stride, rows), view.tobytes())
            region.paste(values, (0, 0), mask)
            view[:] = region.tobytes()
        return frame


def _caption(caption: str, width: int, height: int) -> _Overlay | None:
    """The prompt on a dark translucent band at the bottom, at most three lines."""
    if not caption.strip():
        return None
    font = _font(max(12, height // 26))
    pad = max(6, height // 48)
    lines = _clip_lines(_wrap(" ".join(caption.split()), font, width - 4 * pad), 3)
    line_height = int(font.size * 1.3)
    band_height = min(height, len(lines) * line_height + 2 * pad) // 2 * 2
    band = Image.new("RGBA", (width, band_height), (0, 0, 0, 150))
    draw = ImageDraw.Draw(band)
    for row, line in enumerate(lines):
        draw.text((2 * pad, pad + row * line_height), line, font=font, fill=(255, 255, 255, 255))
    return _Overlay.make(band, height - band_height)


# -- animatics (the preview provider's clips) --------------------------------------------------

_PREVIEW_X264 = {"preset": "ultrafast", "crf": "23"}
_ZOOM = 1.12  # how far the push-in goes over a whole clip


def render_animatic(
    dest: Path,
    *,
    width: int,
    height: int,
    seconds: int,
    fps: int = FPS,
    first: Path | str | None,
    last: Path | str | None,
    caption: str,
) -> None:
    """An offline stand-in for a generated clip: the first image dissolving into the last (or
    slowly pushed in on when there is no last image), with the prompt as a caption."""
    _check_size(width, height)
    count = max(1, seconds * fps)
    overlay = _caption(caption, width, height)
    end = _still(last, width, height)
    frames: Iterator[VideoFrame]
    if end is not None:
        start = _still(first, width, height) or _dark_card(width, height)
        frames = _dissolve(start, end, count, overlay)
    elif isinstance(first, Path):
        frames = _push_in(_load_image(first), width, height, count, overlay)
    else:
        frames = _hold(_still(first, width, height) or _dark_card(width, height), count, overlay)

    def write(tmp: Path) -> None:
        with _writer(tmp, width, height, fps, _PREVIEW_X264) as out:
            for frame in frames:
                out.put(frame)

    _atomic_write(dest, write)


def _ease(t: float) -> float:
    return t * t * (3 - 2 * t)


def _captioned(overlay: _Overlay | None, image: Image.Image) -> VideoFrame:
    return _yuv(overlay.on_image(image) if overlay else image)


def _hold(image: Image.Image, count: int, overlay: _Overlay | None) -> Iterator[VideoFrame]:
    frame = _captioned(overlay, image)  # converted once: every frame is the same picture
    for _ in range(count):
        yield frame


def _dissolve(
    start: Image.Image, end: Image.Image, count: int, overlay: _Overlay | None
) -> Iterator[VideoFrame]:
    """Hold the first image, dissolve, hold the last: the clip ends exactly on the last image,
    which is what a chained scene then starts from."""
    # The caption blends into itself, so it is laid on both ends once, not on every frame.
    first, last = _captioned(overlay, start), _captioned(overlay, end)
    a, b = _planes(first), _planes(last)
    hold = count // 8
    span = max(1, count - 1 - 2 * hold)
    for index in range(count):
        t = (index - hold) / span
        if t <= 0.0 or count == 1:
            yield first
        elif t >= 1.0:
            yield last
        else:
            mix = _ease(t)
            blended = [Image.blend(pa, pb, mix) for pa, pb in zip(a, b, strict=True)]
            yield _from_planes(blended, start.width, start.height)


def _push_in(
    source: Image.Image, width: int, height: int, count: int, overlay: _Overlay | None
) -> Iterator[VideoFrame]:
    # Fitted larger than the canvas once, so zooming in shows real detail rather than blur.
    big = _fit(source, round(width * _ZOOM) // 2 * 2, round(height * _ZOOM) // 2 * 2)
    for index in range(count):
        zoom = _ZOOM / (1 + (_ZOOM - 1) * _ease(index / max(1, count - 1)))
        w, h = round(width * zoom), round(height * zoom)
        left, top = (big.width - w) // 2, (big.height - h) // 2
        crop = VideoFrame.from_image(big.crop((left, top, left + w, top + h)))
        frame = crop.reformat(width=width, height=height, format=PIX_FMT, interpolation="BILINEAR")
        yield overlay.on_frame(frame) if overlay else frame


# -- stitching -------------------------------------------------------------------------------

_STITCH_X264 = {"preset": "veryfast", "crf": "18"}


class _NotMonotonic(Exception):
    """Stream copy would give decode timestamps that go backwards (clips with different
    B-frame delays); re-encoding is the way out."""


def stitch(clips: Sequence[Path], dest: Path) -> Literal["copy", "reencode"]:
    """Concatenate clips into `dest`: packets are copied when the clips are alike, otherwise
    everything is re-encoded to the first clip's size and frame rate."""
    if not clips:
        raise MediaError("nothing to stitch: no clips given")
    infos = [probe(clip) for clip in clips]
    if _copyable(clips, infos):
        try:
            _atomic_write(dest, lambda tmp: _remux(clips, infos, tmp))
            return "copy"
        except _NotMonotonic:
            pass
    _atomic_write(dest, lambda tmp: _reencode(clips, infos, tmp))
    return "reencode"


def _copyable(clips: Sequence[Path], infos: Sequence[ClipInfo]) -> bool:
    def shape(info: ClipInfo) -> tuple[object, ...]:
        return (info.codec, info.width, info.height, info.fps, info.pix_fmt)

    if any(shape(info) != shape(infos[0]) for info in infos):
        return False
    # An MP4 track carries one set of H.264 parameter sets (SPS/PPS): clips from differently
    # configured encoders (CABAC or not, other profiles) would decode as garbage after a copy.
    return len({_extradata(clip) for clip in clips}) == 1


def _extradata(clip: Path) -> bytes:
    with _open_video(clip) as (_, stream):
        return bytes(stream.codec_context.extradata or b"")


def _remux(clips: Sequence[Path], infos: Sequence[ClipInfo], tmp: Path) -> None:
    out = av.open(str(tmp), mode="w", format="mp4")
    try:
        target: av.stream.Stream | None = None
        last_dts: Fraction | None = None
        offset = Fraction(0)  # seconds already written
        for clip, info in zip(clips, infos, strict=True):
            with _open_video(clip) as (container, stream):
                if target is None:
                    target = out.add_stream_from_template(stream)
                for packet in _packets(container, stream):
                    tb = packet.time_base
                    shift = round(offset / tb)
                    packet.pts = None if packet.pts is None else packet.pts + shift
                    packet.dts = None if packet.dts is None else packet.dts + shift
                    if packet.dts is not None:
                        dts = packet.dts * tb
                        if last_dts is not None and dts <= last_dts:
                            raise _NotMonotonic
                        last_dts = dts
                    packet.stream = target
                    out.mux(packet)
            offset += info.frames / info.fps
    finally:
        out.close()


def _reencode(clips: Sequence[Path], infos: Sequence[ClipInfo], tmp: Path) -> None:
    head = infos[0]
    with _writer(tmp, head.width, head.height, head.fps, _STITCH_X264) as out:
        for clip, info in zip(clips, infos, strict=True):
            with _open_video(clip) as (container, stream):
                stream.codec_context.thread_type = "AUTO"
                _retime(container.decode(stream), info, head, out)


def _retime(frames: Iterator[VideoFrame], info: ClipInfo, head: ClipInfo, out: _Writer) -> None:
    """Write a clip's frames at the output's frame rate, keeping its duration: frames are
    repeated or dropped when the rates differ, and passed through one for one when not."""
    wanted = info.frames if info.fps == head.fps else round(info.frames * head.fps / info.fps)
    step = info.fps / head.fps  # input frames per output frame
    written = 0
    frame: VideoFrame | None = None
    for index, decoded in enumerate(frames):
        frame = _conform(decoded, head.width, head.height)
        while written < wanted and math.floor(written * step) <= index:
            out.put(frame)
            written += 1
    while frame is not None and written < wanted:  # the decoder gave fewer frames than packets
        out.put(frame)
        written += 1


def _conform(frame: VideoFrame, width: int, height: int) -> VideoFrame:
    if (frame.width, frame.height) == (width, height) or abs(
        math.log((frame.width / frame.height) / (width / height))
    ) < 0.01:
        return frame.reformat(width=width, height=height, format=PIX_FMT)
    # Another shape: letterboxed, not stretched.
    image = ImageOps.pad(frame.to_image(), (width, height), Image.Resampling.BICUBIC, color=0)
    return _yuv(image)


# -- thumbnails ------------------------------------------------------------------------------


def thumbnail(src: Path, dest: Path, width: int = 320) -> None:
    """A small JPEG of an image, or of a video's first frame."""
    image = _still_or_first_frame(src)
    height = max(1, round(image.height * width / image.width))
    small = image.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
    _atomic_write(dest, lambda tmp: small.save(tmp, format="JPEG", quality=80, optimize=True))


def _still_or_first_frame(src: Path) -> Image.Image:
    if not src.is_file():
        raise MediaError(f"file not found: {src}")
    try:
        return _load_image(src)
    except MediaError:
        pass
    with _open_video(src) as (container, stream):
        frame = _first_frame(container, stream)
        if frame is None:
            raise MediaError(f"{src} has no decodable frame")
        return frame.to_image()
