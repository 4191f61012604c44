"""A scene's fingerprint: what would make its clip different, and nothing else.

Scheme 2 hashes what decides the clip: the provider, the prompt, duration, resolution (which
picks the model tier), prompt optimizer, the options the user set, and each input image (a
local file by its bytes, a URL as written, a chained frame by its *pixels*). It hashes no wire
detail an adapter chooses, so a new hailuo-pipe that adds a default field to a request, or
encodes extracted frames differently, never makes an unchanged scene look changed.

Scheme 1 (lockfiles before scheme 2) hashed the exact wire request and a chained frame's PNG
bytes. Such entries are migrated, not re-rendered: see `plan.decide` and `same_meaning`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from hailuo_pipe import providers
from hailuo_pipe.providers.base import WireRequest
from hailuo_pipe.storyboard.images import sha256_file
from hailuo_pipe.storyboard.model import ImageInput, Scene

SCHEME = 2

# (scene id, "first" | "last") -> what stands for that frame: its pixel digest (scheme 2) or
# "sha256:HEX" of its PNG (scheme 1), for frames that exist
FrameHashes = Mapping[tuple[str, str], str]


def canonical(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode("utf-8")


def image_token(image: ImageInput, frames: FrameHashes) -> str | None:
    """What stands for an image; None while a chained frame is pending."""
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


def fingerprint(scene: Scene, tokens: Mapping[str, str]) -> str:
    """Scheme 2: the scene's meaning, with its input images as `image_tokens`."""
    payload = {
        "v": SCHEME,
        "provider": scene.provider,
        "prompt": scene.prompt,
        "duration": scene.duration,
        "resolution": scene.resolution,
        "prompt_optimizer": scene.prompt_optimizer,
        "options": scene.options,
        "images": dict(tokens),
    }
    return "sha256:" + hashlib.sha256(canonical(payload)).hexdigest()


def legacy_fingerprint(scene: Scene, request: WireRequest) -> str:
    """Scheme 1, kept to recognise an unchanged scene in a lockfile written before scheme 2."""
    payload = {
        "v": 1,
        "provider": scene.provider,
        "method": request.method,
        "path": request.path,
        "body": request.body,
    }
    return "sha256:" + hashlib.sha256(canonical(payload)).hexdigest()


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A request as dotted leaf keys (a one-item list stands for its item)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(value, list) and len(value) == 1:
        return flatten(value[0], prefix)
    return {prefix.rstrip("."): value}


def same_meaning(scene: Scene, recorded: Any, current: WireRequest) -> bool:
    """Whether a request recorded by an older hailuo-pipe asked for what `current` (built now,
    from the same inputs) asks for. Fields today's adapter fills with constants of its own
    (model names, fps, output formats, placeholders) are wire details and are left out; every
    field that comes from the scene or from the user's options must agree, and a recorded field
    today's adapter does not fill must have come from the user and agree too."""
    cls = providers.get(scene.provider)
    now, was = flatten(current.body), flatten(recorded)
    chosen = set(flatten(dict(scene.options)))
    constants = {
        key
        for key in now
        if key.rpartition(".")[2] not in cls.field_origins and key not in chosen
    }
    keys = (set(now) | set(was)) - constants
    return all(now.get(k) == was.get(k) for k in keys)
