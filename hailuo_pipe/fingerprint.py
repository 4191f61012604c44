"""A scene's fingerprint: what would make its clip different.

It hashes the provider, the exact request that would be sent (after templates), and the content
of its input images (a chained frame by the hash of that frame). Images are hashed, not sent
inline, so the fingerprint does not depend on how a provider transports them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from . import providers
from .images import sha256_file
from .providers.base import WireRequest
from .storyboard import ImageInput, Scene

# (scene id, "first" | "last") -> "sha256:HEX" of that frame's PNG, for frames that exist
FrameHashes = Mapping[tuple[str, str], str]


def canonical(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode("utf-8")


def image_token(image: ImageInput, frames: FrameHashes) -> str | None:
    """What stands for an image in the request we hash; None while a chained frame is pending."""
    if image.url is not None:
        return image.url
    if image.ref is not None:
        return frames.get((image.ref.scene, image.ref.frame))
    assert image.path is not None
    return "sha256:" + sha256_file(image.path)


def image_tokens(scene: Scene, frames: FrameHashes) -> dict[str, str] | None:
    tokens = {}
    for key in ("image", "end_image"):
        img = getattr(scene, key)
        if img is not None:
            token = image_token(img, frames)
            if token is None:
                return None
            tokens[key] = token
    return tokens


def request_for(scene: Scene, tokens: Mapping[str, str]) -> WireRequest:
    return providers.get(scene.provider)().build_request(scene, tokens)


def fingerprint(scene: Scene, request: WireRequest) -> str:
    payload = {
        "v": 1,
        "provider": scene.provider,
        "method": request.method,
        "path": request.path,
        "body": request.body,
    }
    return "sha256:" + hashlib.sha256(canonical(payload)).hexdigest()
