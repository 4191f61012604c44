"""Stills: a clip's first and last frame (exact, decoded as little as possible), what a frame's
pixels hash to, frames written as PNGs, thumbnails, and local images read upright.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.container
import av.video
from av.video.frame import VideoFrame
from PIL import Image, ImageOps

from hailuo_pipe.errors import MediaError
from hailuo_pipe.media.av import atomic_write, open_video, reason, shown_packets

# What a transparent image is laid on; the animatics' background too.
DARK = (18, 20, 26)


@dataclass(frozen=True)
class WrittenFrame:
    """A frame written as a PNG: what its pixels hash to, and the file's hash and size."""

    pixels: str
    sha256: str
    size: int


def extract_frames(video: Path, dests: Mapping[str, Path]) -> dict[str, str]:
    """Write the first and/or last frame of `video` ("first"/"last" -> PNG path), exactly as a
    full decode has them, and return each one's `pixel_digest`."""
    return {which: frame.pixels for which, frame in write_frames(video, dests).items()}


def write_frames(video: Path, dests: Mapping[str, Path]) -> dict[str, WrittenFrame]:
    """`extract_frames`, with each PNG's sha256 and size taken from the bytes as written (not
    read back)."""
    images = edge_images(video, tuple(dests))
    written = {}
    for which, dest in dests.items():
        data = _png(images[which])
        atomic_write(dest, functools.partial(Path.write_bytes, data=data), durable=False)
        digest = hashlib.sha256(data).hexdigest()
        written[which] = WrittenFrame(pixel_digest(images[which]), digest, len(data))
    return written


def edge_images(video: Path, wanted: Sequence[str]) -> dict[str, Image.Image]:
    """The first and/or last frame of `video` as RGB images. The last frame's decoding pass
    gives the first one too, when it decoded it: one open and one decode for both."""
    with open_video(video) as (container, stream):
        if "last" in wanted:
            first, last = _edge_frames(container, stream)
        else:
            first, last = _first_frame(container, stream), None
    if "first" in wanted and first is None:  # the pass skipped or started after it
        with open_video(video) as (container, stream):
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


def _png(image: Image.Image) -> bytes:
    # FFmpeg's PNG encoder, which PyAV already ships: on a 1366 x 768 photograph a third faster
    # than Pillow's at level 1 (for 10-15 % more bytes), on the emulator's small frames three
    # times faster and half the size (bench/README.md). The frame is made afresh from the
    # pixels so it carries no colour tags: FFmpeg writes a tagged frame's (cICP, cHRM) into
    # the PNG, and a browser would then show it otherwise than the clip's own pixels, which
    # an untagged PNG (sRGB, as Pillow wrote it) keeps. Square pixels: a pHYs of 1:1, not 0:1.
    # Written without fsync: a frame is re-derivable from its clip (which is synced), and a
    # frame a crash left empty or short no longer matches its recorded size and sha256, so
    # the next plan restores it from the clip for free.
    frame = VideoFrame.from_image(image)
    encoder = av.CodecContext.create("png", "w")
    encoder.width, encoder.height, encoder.pix_fmt = frame.width, frame.height, "rgb24"
    encoder.sample_aspect_ratio = Fraction(1, 1)
    encoder.options = {"pred": "mixed", "compression_level": "1"}
    return b"".join(bytes(packet) for packet in [*encoder.encode(frame), *encoder.encode(None)])


def _rgb(frame: VideoFrame) -> Image.Image:
    """The frame as RGB, with the same conversion as `VideoFrame.to_image()`, but read straight
    from the converted plane instead of row by row in Python."""
    plane = _rgb24(frame).planes[0]
    if plane.line_size < 0:
        return frame.to_image()
    size = (plane.width, plane.height)
    return Image.frombuffer("RGB", size, bytes(plane), "raw", "RGB", plane.line_size, 1)


def _rgb24(frame: VideoFrame) -> VideoFrame:
    # One thread: since PyAV 17 a reformat picks as many as there are CPUs, started afresh for
    # each new frame; an emulator frame's conversion took 1.0-1.5 ms for 0.4-0.5 ms of CPU,
    # and 0.3-0.9 ms for 0.2 ms on one (bench/README.md). The workers convert frames in
    # parallel, one each.
    try:
        return frame.reformat(format="rgb24", threads=1)
    except TypeError:  # PyAV before 17: no such argument, and one thread anyway
        return frame.reformat(format="rgb24")


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
    packets = shown_packets(container, stream)
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


# -- images and thumbnails -------------------------------------------------------------------


def load_image(path: Path) -> Image.Image:
    """A local image as upright RGB; transparency is laid on the dark background."""
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                backdrop = Image.new("RGBA", image.size, (*DARK, 255))
                return Image.alpha_composite(backdrop, image.convert("RGBA")).convert("RGB")
            return image.convert("RGB")
    except FileNotFoundError:
        raise MediaError(f"image file not found: {path}") from None
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise MediaError(f"{path} cannot be read as an image: {reason(err)}") from None


def thumbnail(src: Path, dest: Path, width: int = 320) -> None:
    """A small JPEG of an image, or of a video's first frame."""
    image = _still_or_first_frame(src)
    height = max(1, round(image.height * width / image.width))
    small = image.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
    atomic_write(dest, lambda tmp: small.save(tmp, format="JPEG", quality=80, optimize=True))


def _still_or_first_frame(src: Path) -> Image.Image:
    if not src.is_file():
        raise MediaError(f"file not found: {src}")
    try:
        return load_image(src)
    except MediaError:
        pass
    with open_video(src) as (container, stream):
        frame = _first_frame(container, stream)
        if frame is None:
            raise MediaError(f"{src} has no decodable frame")
        return frame.to_image()
