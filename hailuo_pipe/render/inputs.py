"""A scene's input images as a provider receives them: a URL as given, a local file or a chained
frame checked (limits, nothing from outside the project) and encoded the provider's way."""

from __future__ import annotations

from pathlib import Path

from hailuo_pipe.errors import MediaError
from hailuo_pipe.paths import escape
from hailuo_pipe.providers.base import Provider, WireRequest
from hailuo_pipe.render.context import Context
from hailuo_pipe.storyboard.images import check as check_image
from hailuo_pipe.storyboard.model import ImageInput, Scene


async def wire_request(ctx: Context, scene: Scene, provider: Provider) -> WireRequest:
    """The exact request the provider will receive for `scene`."""
    client = ctx.clients[scene.provider]
    wire: dict[str, str] = {}
    for key in ("image", "end_image"):
        img = getattr(scene, key)
        if img is None:
            continue
        if img.url is not None:
            wire[key] = img.url
        else:
            path = local_image(ctx, img)
            mime = "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
            wire[key] = await provider.encode_image(client, path.read_bytes(), mime)
    return provider.build_request(scene, wire)


def local_image(ctx: Context, img: ImageInput) -> Path:
    """The file behind a local input image: the storyboard's own, or a chained scene's frame."""
    if img.path is not None:
        check_image(img.path)
        return img.path
    assert img.ref is not None
    record = ctx.writer.lock.scenes[img.ref.scene].frames[img.ref.frame]
    # the frame is sent to a provider: a link to a private file must not be uploaded
    why = escape(ctx.base, Path(record.path))
    if why is not None:
        raise MediaError(
            f"{record.path}: the {img.ref.frame} frame of {img.ref.scene} {why}; delete it "
            f"and render again (run with --force {img.ref.scene} to make it anew)"
        )
    return ctx.base / record.path
