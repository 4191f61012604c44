"""Animatics, the preview provider's clips: an offline stand-in for a generated clip, made of
the scene's images (fitted to the frame, or a card naming a URL it may not fetch) dissolving or
slowly pushed in on, with the prompt as a caption.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from av.video.frame import VideoFrame
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from hailuo_pipe.media.av import FPS, PIX_FMT, atomic_write, check_size, to_yuv, writer
from hailuo_pipe.media.frames import DARK, load_image

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
    check_size(width, height)
    count = max(1, seconds * fps)
    overlay = _caption(caption, width, height)
    end = _still(last, width, height)
    frames: Iterator[VideoFrame]
    if end is not None:
        start = _still(first, width, height) or _dark_card(width, height)
        frames = _dissolve(start, end, count, overlay)
    elif isinstance(first, Path):
        frames = _push_in(load_image(first), width, height, count, overlay)
    else:
        frames = _hold(_still(first, width, height) or _dark_card(width, height), count, overlay)

    def write(tmp: Path) -> None:
        with writer(tmp, width, height, fps, _PREVIEW_X264) as out:
            for frame in frames:
                out.put(frame)

    atomic_write(dest, write)


def _ease(t: float) -> float:
    return t * t * (3 - 2 * t)


def _captioned(overlay: _Overlay | None, image: Image.Image) -> VideoFrame:
    return to_yuv(overlay.on_image(image) if overlay else image)


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


# -- stills and captions ---------------------------------------------------------------------


def _still(source: Path | str | None, width: int, height: int) -> Image.Image | None:
    if source is None:
        return None
    if isinstance(source, str):
        return _url_card(source, width, height)
    return _fit(load_image(source), width, height)


def _fit(image: Image.Image, width: int, height: int) -> Image.Image:
    """Fill the canvas: crop when the shapes are close, otherwise letterbox over a blurred copy
    (cropping a portrait photo to 16:9 would cut away most of it)."""
    mismatch = abs(math.log((image.width / image.height) / (width / height)))
    if mismatch < math.log(1.25):
        return ImageOps.fit(image, (width, height), Image.Resampling.BICUBIC)
    small = ImageOps.fit(image, (max(1, width // 16), max(1, height // 16)))
    backdrop = small.filter(ImageFilter.GaussianBlur(2)).resize((width, height))
    backdrop = Image.blend(Image.new("RGB", (width, height), DARK), backdrop, 0.45)
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
        yuv = to_yuv(rgb).planes
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
