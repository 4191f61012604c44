"""Video and image work on this machine, with PyAV and Pillow on real files.

    av.py        open, probe, check a provider's clip; the H.264 writer; the atomic write
    frames.py    a clip's first and last frame, pixel digests, PNGs, thumbnails
    animatic.py  the preview provider's clips: stills, captions, dissolves and push-ins
    stitch.py    scene clips joined into the cut

Bad input files become `MediaError` with a message naming the file; outputs are written to a
temporary file beside the destination and renamed into place, so a reader never sees half a
clip or half a frame. Callers use this face (`media.probe`, `media.stitch`, ...).
"""

from __future__ import annotations

from hailuo_pipe.errors import MediaError
from hailuo_pipe.media.animatic import render_animatic
from hailuo_pipe.media.av import RESOLUTION_SIZES, ClipInfo, check_clip, probe
from hailuo_pipe.media.frames import (
    edge_images,
    extract_frames,
    pixel_digest,
    png_pixels,
    thumbnail,
    write_frames,
)
from hailuo_pipe.media.stitch import stitch

__all__ = [
    "RESOLUTION_SIZES",
    "ClipInfo",
    "MediaError",
    "check_clip",
    "edge_images",
    "extract_frames",
    "pixel_digest",
    "png_pixels",
    "probe",
    "render_animatic",
    "stitch",
    "thumbnail",
    "write_frames",
]
