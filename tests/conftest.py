"""Shared fixtures: sample images, spec writing, the provider emulator (`support/`)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a storyboard (dedented) into tmp_path, with good sample images beside it."""
    assets = tmp_path / "assets"
    assets.mkdir(exist_ok=True)
    Image.new("RGB", (640, 360), (90, 120, 160)).save(assets / "a.png")
    Image.new("RGB", (640, 360), (200, 120, 60)).save(assets / "b.jpg", quality=85)

    def write(text: str, name: str = "story.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


from support.emulator_fixture import emulator, emulator_process  # noqa: E402,F401  (fixtures)
