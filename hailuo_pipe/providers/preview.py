"""Preview: renders an animatic on this machine, so any storyboard can be rehearsed for free.

It accepts everything any hosted provider accepts (every resolution at 6 and 10 s, a last frame,
local files, no required first frame), draws the first image dissolving into the last with the
prompt as a caption, and writes a clip shaped like a provider's (H.264, yuv420p, 25 fps, MP4),
so chaining, stitching and reports work exactly as they will with real renders.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from hailuo_pipe import media
from hailuo_pipe.providers.base import Capabilities, Provider, WireRequest
from hailuo_pipe.storyboard.model import DURATIONS, RESOLUTIONS, Scene


class PreviewProvider(Provider):
    name = "preview"
    title = "Preview (local animatic)"
    env_prefix = ""
    default_base_url = ""
    local = True
    capabilities = Capabilities(
        durations=dict.fromkeys(RESOLUTIONS, DURATIONS),
        end_image=True,
        local_images=True,
        needs_first_frame=(),
    )
    field_origins: ClassVar[Mapping[str, str]] = {
        "prompt": "prompt",
        "duration": "duration",
        "resolution": "resolution",
        "image": "image",
        "end_image": "end_image",
        "prompt_optimizer": "prompt_optimizer",
    }

    def build_request(self, scene: Scene, images: Mapping[str, str]) -> WireRequest:
        # Scene options belong to hosted providers and change nothing here, so they stay out
        # of the body (and of the fingerprint).
        body: dict[str, Any] = {
            "prompt": scene.prompt,
            "duration": scene.duration,
            "resolution": scene.resolution,
            "prompt_optimizer": scene.prompt_optimizer,
        }
        for key in ("image", "end_image"):
            if key in images:
                body[key] = images[key]
        return WireRequest("LOCAL", "preview", body)

    async def render_local(
        self, scene: Scene, images: Mapping[str, Path | str], dest: Path
    ) -> None:
        width, height = media.RESOLUTION_SIZES[scene.resolution]
        # Encoding is CPU work; a thread keeps the event loop polling the hosted jobs.
        await asyncio.to_thread(
            media.render_animatic,
            dest,
            width=width,
            height=height,
            seconds=scene.duration,
            first=images.get("image"),
            last=images.get("end_image"),
            caption=scene.prompt,
        )
