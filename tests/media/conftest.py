"""The media tests' files: a B-frame clip with one keyframe (like a Hailuo clip), two images,
and a text file posing as a clip."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from support.video import ONE_KEYFRAME

from hailuo_emulator.synthetic import synthetic_clip


@pytest.fixture(scope="session")
def bframe_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clips") / "bframes.mp4"
    synthetic_clip(path, width=320, height=180, seconds=3, seed=7, x264=ONE_KEYFRAME)
    return path


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("images")
    red = Image.new("RGB", (640, 360), (200, 50, 40))
    ImageDraw.Draw(red).ellipse((100, 60, 300, 260), fill=(30, 200, 90))
    blue = Image.new("RGB", (640, 360), (30, 60, 210))
    ImageDraw.Draw(blue).rectangle((350, 40, 600, 220), fill=(250, 240, 20))
    red.save(folder / "first.png")
    blue.save(folder / "last.jpg", quality=92)
    return folder / "first.png", folder / "last.jpg"


@pytest.fixture
def not_a_video(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_text("this is not a video\n" * 20)
    return path
