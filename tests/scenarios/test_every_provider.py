"""Every hosted provider renders, against the emulator, the three kinds of scene a storyboard
has: text-to-video, image-to-video from a chained first frame (the exact PNG of the scene
before it, sent losslessly), and a first and a last frame where the provider takes one."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from support.emulator_fixture import provider_env

from hailuo_emulator import Emulator
from hailuo_pipe import providers
from hailuo_pipe.render import RenderOptions, render
from hailuo_pipe.state.lockfile import Lockfile
from hailuo_pipe.validate import load_storyboard

HOSTED = tuple(n for n in providers.PROVIDER_NAMES if not providers.get(n).local)
URL = "https://example.com/frames/first.jpg"
END_URL = "https://example.com/frames/last.jpg"


def frames(name: str, body: Any) -> tuple[Any, Any]:
    """(first frame, last frame) as the request carries them, None where absent."""
    if name == "runware":
        listed = body[0].get("inputs", {}).get("frameImages", [])
        given = {f["frame"]: f["image"] for f in listed}
        return given.get("first"), given.get("last")
    where, first, last = {
        "wavespeed": (None, "image", "end_image"),
        "gmicloud": ("payload", "first_frame_image", "last_frame_image"),
        "minimax": (None, "first_frame_image", "last_frame_image"),
        "apiframe": ("hailuoParams", "image", "end_image"),
        "fal": (None, "image_url", "end_image_url"),
        "replicate": ("input", "first_frame_image", "last_frame_image"),
    }[name]
    holder = body[where] if where else body
    return holder.get(first), holder.get(last)


def spec_for(name: str) -> str:
    caps = providers.get(name).capabilities
    chained = "{from: t2v, frame: last}" if caps.local_images else URL
    text = f"""
version: 1
name: every
defaults:
  provider: {name}
  resolution: 768p
scenes:
  - id: t2v
    prompt: "[Aerial dive] the harbor from above"
  - id: i2v
    prompt: "[Tracking shot] along the docks"
    image: {chained}
"""
    if caps.end_image:
        end = "assets/b.jpg" if caps.local_images else END_URL
        first = "{from: i2v, frame: last}" if caps.local_images else URL
        text += f"""  - id: ends
    prompt: "[Push in] into the atrium"
    image: {first}
    end_image: {end}
"""
    return text


def decoded(value: str) -> bytes:
    assert value.startswith("data:image/"), value[:40]
    return base64.b64decode(value.split(",", 1)[1])


@pytest.mark.parametrize("name", HOSTED)
def test_every_provider_renders_text_chained_image_and_last_frame_scenes(
    name: str, write_spec, emulator: Emulator
) -> None:
    spec: Path = write_spec(spec_for(name))
    result = render(load_storyboard(spec), RenderOptions(environ=provider_env(emulator)))
    outcomes = {r.scene: r.outcome for r in result.results}
    expected = ["t2v", "i2v"] + (["ends"] if providers.get(name).capabilities.end_image else [])
    assert outcomes == dict.fromkeys(expected, "rendered"), result
    assert emulator.jobs()[name] == len(expected)  # one paid job a scene
    lock = Lockfile.load(spec.with_suffix(".lock"), "every")
    assert {e.state for e in lock.scenes.values()} == {"done"}

    sent = {}
    for request in emulator.requests("submit"):
        text = str(request["body"])
        sid = next(s for s, word in (("t2v", "harbor"), ("i2v", "docks"), ("ends", "atrium"))
                   if word in text)  # fmt: skip
        sent[sid] = frames(name, request["body"])
    assert sent["t2v"] == (None, None)  # text-to-video: no frame at all
    first, last = sent["i2v"]
    assert last is None
    if providers.get(name).capabilities.local_images:
        t2v_last = (spec.parent / lock.scenes["t2v"].frames["last"].path).read_bytes()
        assert decoded(first) == t2v_last  # the exact frame, losslessly
    else:
        assert first == URL
    if "ends" in sent:
        first, last = sent["ends"]
        if providers.get(name).capabilities.local_images:
            i2v_last = (spec.parent / lock.scenes["i2v"].frames["last"].path).read_bytes()
            assert decoded(first) == i2v_last
            assert decoded(last) == (spec.parent / "assets" / "b.jpg").read_bytes()
        else:
            assert (first, last) == (URL, END_URL)
