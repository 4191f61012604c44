"""Stitching: scene clips joined into the cut, by copying packets when the clips are alike and
by re-encoding to the first clip's size and rate when they are not.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import av.stream
from av.video.frame import VideoFrame
from PIL import Image, ImageOps

from hailuo_pipe.errors import MediaError
from hailuo_pipe.media.av import (
    PIX_FMT,
    ClipInfo,
    Writer,
    atomic_write,
    open_video,
    probe,
    shown_packets,
    to_yuv,
    writer,
)

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
            atomic_write(dest, lambda tmp: _remux(clips, infos, tmp))
            return "copy"
        except _NotMonotonic:
            pass
    atomic_write(dest, lambda tmp: _reencode(clips, infos, tmp))
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
    with open_video(clip) as (_, stream):
        return bytes(stream.codec_context.extradata or b"")


def _remux(clips: Sequence[Path], infos: Sequence[ClipInfo], tmp: Path) -> None:
    out = av.open(str(tmp), mode="w", format="mp4")
    try:
        target: av.stream.Stream | None = None
        last_dts: Fraction | None = None
        offset = Fraction(0)  # seconds already written
        for clip, info in zip(clips, infos, strict=True):
            with open_video(clip) as (container, stream):
                if target is None:
                    target = out.add_stream_from_template(stream)
                for packet in shown_packets(container, stream):
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
    with writer(tmp, head.width, head.height, head.fps, _STITCH_X264) as out:
        for clip, info in zip(clips, infos, strict=True):
            with open_video(clip) as (container, stream):
                stream.codec_context.thread_type = "AUTO"
                _retime(container.decode(stream), info, head, out)


def _retime(frames: Iterator[VideoFrame], info: ClipInfo, head: ClipInfo, out: Writer) -> None:
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
    return to_yuv(image)
