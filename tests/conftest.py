"""Shared fixtures: sample images, spec writing, the provider emulator."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

CORPUS = Path(__file__).parent / "corpus"


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


from emulator_fixture import emulator, emulator_process  # noqa: E402,F401  (shared fixtures)

PREFIXES = ("WAVESPEED", "GMI", "MINIMAX", "RUNWARE", "APIFRAME")


def provider_env(emu) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Environment that points every hosted provider at the emulator."""
    env: dict[str, str] = {}
    for prefix in PREFIXES:
        env[f"{prefix}_API_KEY"] = emu.key
        env[f"{prefix}_BASE_URL"] = emu.url
    return env
