"""The preview provider: its request, its schema, and a real local render."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from PIL import Image

from hailuo_pipe import media, providers
from hailuo_pipe.providers.preview import PreviewProvider
from hailuo_pipe.storyboard import schemas
from hailuo_pipe.storyboard.model import DURATIONS, RESOLUTIONS, ImageInput, Scene

SHA = "sha256:" + "ab" * 32


def scene(**changes: object) -> Scene:
    fields: dict[str, object] = {
        "id": "dawn",
        "prompt": "Aerial dive over Ice Harbor at dawn",
        "provider": "preview",
        "duration": 6,
        "resolution": "512p",
        "prompt_optimizer": False,
    }
    return Scene(**(fields | changes))  # type: ignore[arg-type]


def test_registered_under_its_name() -> None:
    assert providers.get("preview") is PreviewProvider


def test_needs_nothing_from_the_environment() -> None:
    provider = PreviewProvider.from_env({})
    assert isinstance(provider, PreviewProvider)
    assert provider.secrets() == ()


def test_offers_everything_a_hosted_provider_offers() -> None:
    caps = PreviewProvider.capabilities
    assert caps.resolutions == RESOLUTIONS
    assert all(caps.durations[r] == DURATIONS for r in RESOLUTIONS)
    assert caps.end_image and caps.local_images
    assert caps.needs_first_frame == ()
    assert PreviewProvider.local


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_is_free(resolution: str) -> None:
    assert PreviewProvider().price(scene(resolution=resolution, duration=10)) == Decimal("0")


def test_request_is_the_neutral_fields() -> None:
    request = PreviewProvider().build_request(
        scene(options={"outputQuality": 90}), {"image": SHA, "end_image": "https://x.test/a.png"}
    )
    assert (request.method, request.path) == ("LOCAL", "preview")
    assert request.body == {
        "prompt": "Aerial dive over Ice Harbor at dawn",
        "duration": 6,
        "resolution": "512p",
        "prompt_optimizer": False,
        "image": SHA,
        "end_image": "https://x.test/a.png",
    }


def test_request_is_deterministic() -> None:
    one = PreviewProvider().build_request(scene(), {"end_image": SHA, "image": SHA})
    two = PreviewProvider().build_request(scene(), {"image": SHA, "end_image": SHA})
    assert json.dumps(one.body) == json.dumps(two.body)


def test_schema_is_valid_and_accepts_every_request() -> None:
    Draft202012Validator.check_schema(schemas.load_schema("providers/preview"))
    for resolution in RESOLUTIONS:
        for duration in DURATIONS:
            for images in (
                {},
                {"image": SHA},
                {"image": SHA, "end_image": SHA},
                {"end_image": SHA},
            ):
                body = (
                    PreviewProvider()
                    .build_request(scene(resolution=resolution, duration=duration), images)
                    .body
                )
                assert schemas.request_errors("preview", body) == []


def test_schema_rejects_what_it_does_not_know() -> None:
    body = PreviewProvider().build_request(scene(), {}).body
    assert schemas.request_errors("preview", body | {"fps": 30})
    assert schemas.request_errors("preview", body | {"prompt": "x" * 2001})
    assert schemas.request_errors("preview", body | {"duration": 8})


def test_renders_a_clip_locally(tmp_path: Path) -> None:
    image = tmp_path / "harbor.png"
    Image.new("RGB", (640, 360), (40, 90, 160)).save(image)
    dest = tmp_path / "renders" / "dawn.mp4"
    dest.parent.mkdir()
    the_scene = scene(
        image=ImageInput(path=image), end_image=ImageInput(url="https://x.test/end.png")
    )
    inputs: dict[str, Path | str] = {"image": image, "end_image": "https://x.test/end.png"}
    asyncio.run(PreviewProvider().render_local(the_scene, inputs, dest))
    info = media.probe(dest)
    assert (info.codec, info.width, info.height, info.fps) == ("h264", 912, 512, Fraction(25))
    assert info.frames == 6 * 25
    assert info.pix_fmt == "yuv420p"
