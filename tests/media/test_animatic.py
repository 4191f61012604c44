"""media/animatic.py against real encodes: the preview provider's clips show the scene's images
and prompt, and end exactly on the last image."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat
from support.video import decode_all, difference, pixels

from hailuo_pipe import media
from hailuo_pipe.errors import MediaError


def test_animatic_dissolves_from_first_to_last_image(
    images: tuple[Path, Path], tmp_path: Path
) -> None:
    first, last = images
    clip = tmp_path / "preview.mp4"
    media.render_animatic(
        clip, width=320, height=180, seconds=6, first=first, last=last, caption="A harbor at dawn"
    )
    info = media.probe(clip)
    assert (info.codec, info.width, info.height, info.fps, info.pix_fmt) == (
        "h264",
        320,
        180,
        Fraction(25),
        "yuv420p",
    )
    assert info.frames == 150
    assert info.duration == pytest.approx(6.0)
    frames = decode_all(clip)
    start, end = (Image.open(p).resize((320, 180)) for p in images)
    assert difference(frames[0], start) < 6 < difference(frames[0], end)
    assert difference(frames[-1], end) < 6 < difference(frames[-1], start)
    middle = frames[75]
    assert difference(middle, start) > 20 and difference(middle, end) > 20


def test_animatic_frames_extract_exactly(images: tuple[Path, Path], tmp_path: Path) -> None:
    clip = tmp_path / "preview.mp4"
    media.render_animatic(
        clip, width=320, height=180, seconds=6, first=images[0], last=images[1], caption="x"
    )
    frames = decode_all(clip)
    media.extract_frames(clip, {"first": tmp_path / "first.png", "last": tmp_path / "last.png"})
    assert pixels(tmp_path / "first.png")[2] == frames[0].tobytes()
    assert pixels(tmp_path / "last.png")[2] == frames[-1].tobytes()


def test_animatic_pushes_in_without_a_last_image(images: tuple[Path, Path], tmp_path: Path) -> None:
    clip = tmp_path / "push.mp4"
    media.render_animatic(
        clip, width=320, height=180, seconds=6, first=images[0], last=None, caption="Push in"
    )
    frames = decode_all(clip)
    assert len(frames) == 150
    start = Image.open(images[0]).resize((320, 180))
    assert difference(frames[0], start) < 6
    assert difference(frames[-1], frames[0]) > 3  # it moved: zoomed in


def test_animatic_caption_is_drawn(images: tuple[Path, Path], tmp_path: Path) -> None:
    def bottom(caption: str) -> Image.Image:
        clip = tmp_path / f"{len(caption)}.mp4"
        media.render_animatic(
            clip, width=320, height=180, seconds=6, first=images[0], last=None, caption=caption
        )
        return decode_all(clip)[0].crop((0, 150, 320, 180))

    plain, captioned = bottom(""), bottom("Aerial dive over Ice Harbor at dawn " * 4)
    assert sum(ImageStat.Stat(ImageChops.difference(plain, captioned)).mean) / 3 > 20


def test_animatic_without_images_is_a_dark_card(tmp_path: Path) -> None:
    clip = tmp_path / "card.mp4"
    media.render_animatic(
        clip, width=320, height=180, seconds=6, first=None, last=None, caption="Nothing given"
    )
    frames = decode_all(clip)
    assert len(frames) == 150
    assert max(ImageStat.Stat(frames[0].crop((0, 0, 320, 100))).mean) < 40


def test_animatic_shows_a_url_instead_of_fetching_it(tmp_path: Path) -> None:
    clip = tmp_path / "url.mp4"
    media.render_animatic(
        clip,
        width=320,
        height=180,
        seconds=6,
        first="https://unreachable.invalid/harbor.jpg",
        last=None,
        caption="",
    )
    first = decode_all(clip)[0]
    dark = tmp_path / "dark.mp4"
    media.render_animatic(dark, width=320, height=180, seconds=6, first=None, last=None, caption="")
    assert difference(first, decode_all(dark)[0], keep=1.0) > 3


def test_animatic_rejects_a_bad_image(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(MediaError, match=r"bad\.png"):
        media.render_animatic(
            tmp_path / "x.mp4", width=320, height=180, seconds=6, first=bad, last=None, caption=""
        )
    assert not (tmp_path / "x.mp4").exists()


def test_animatic_needs_even_dimensions(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even"):
        media.render_animatic(
            tmp_path / "x.mp4", width=321, height=180, seconds=6, first=None, last=None, caption=""
        )
