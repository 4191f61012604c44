"""WaveSpeedAI: Hailuo 02 behind one endpoint per tier (fast 512p, standard 768p, pro 1080p).

Facts: providers.md, and wavespeed.ai/docs/docs-api/minimax-hailuo-02-standard (parameters
prompt, image, end_image, duration 6|10, enable_prompt_expansion; $0.23 / $0.56) and
wavespeed.ai/docs/what-are-predictions (status created|processing|completed|failed, GET
/api/v3/predictions/{id}). One revision of the standard page names the end frame `last_image`
and prices 6 s at $0.28; providers.md and the other revision say `end_image` / $0.23.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from hailuo_pipe.errors import RequestRejected, TransientError
from hailuo_pipe.providers.base import (
    ABSENT,
    Capabilities,
    JobStatus,
    State,
    WireRequest,
    state_of,
    submitted_job_id,
    wire_int,
)
from hailuo_pipe.providers.http import HostedProvider, Reply, provider_message, segment
from hailuo_pipe.storyboard.model import Scene

if TYPE_CHECKING:
    import httpx

ENDPOINTS = {  # resolution -> submit path
    # wavespeed.ai/docs/docs-api/minimax-hailuo-02-fast: image-to-video only (image required),
    # 6 or 10 s, no end frame; takes go_fast besides the standard fields
    "512p": "/api/v3/minimax/hailuo-02/fast",
    "768p": "/api/v3/minimax/hailuo-02/standard",
    "1080p": "/api/v3/minimax/hailuo-02/pro",
}
RESULT_PATH = "/api/v3/predictions/{id}/result"
PRICES = {  # (resolution, duration) -> USD, from the docs pages above
    ("512p", 6): Decimal("0.10"),
    ("512p", 10): Decimal("0.15"),
    ("768p", 6): Decimal("0.23"),
    ("768p", 10): Decimal("0.56"),
    ("1080p", 6): Decimal("0.48"),
}
STATES: dict[str, State] = {
    "created": "queued",
    "pending": "queued",
    "processing": "running",
    "completed": "succeeded",
    "failed": "failed",
    # the official SDK (wavespeed 2.0.5) also treats these as terminal
    "cancelled": "cancelled",
    "timeout": "failed",
    "deleted": "cancelled",
}
REFUSAL_WORDS = ("nsfw", "sensitive", "safety", "moderation", "inappropriate")


def is_refusal(text: str) -> bool:
    low = text.lower()
    return any(word in low for word in REFUSAL_WORDS)


def _check_envelope(reply: Reply) -> None:
    """WaveSpeed repeats the HTTP status as `code`; a 2xx with another code is an error."""
    body = reply.body
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        raise TransientError(f"WaveSpeedAI: unexpected answer: {str(body)[:200]}")
    code = body.get("code", 200)
    if isinstance(code, int) and code >= 400:
        cls = TransientError if code >= 500 else RequestRejected
        raise cls(f"WaveSpeedAI: {provider_message(body) or f'code {code}'}")


class WaveSpeedProvider(HostedProvider):
    name = "wavespeed"
    title = "WaveSpeedAI"
    env_prefix = "WAVESPEED"
    default_base_url = "https://api.wavespeed.ai"
    version_suffixes = ("/api/v3",)
    capabilities = Capabilities(
        durations={"512p": (6, 10), "768p": (6, 10), "1080p": (6,)},
        end_image=True,
        local_images=True,
        no_end_image=("512p",),
    )
    prices = PRICES
    field_origins: ClassVar[Mapping[str, str]] = {
        "prompt": "prompt",
        "image": "image",
        "end_image": "end_image",
        "duration": "duration",
        "enable_prompt_expansion": "prompt_optimizer",
    }

    def build_request(self, scene: Scene, images: Mapping[str, str]) -> WireRequest:
        body: dict[str, Any] = {"prompt": scene.prompt}
        for key in ("image", "end_image"):
            if key in images:
                body[key] = images[key]
        body["duration"] = scene.duration
        body["enable_prompt_expansion"] = scene.prompt_optimizer
        body.update(scene.options)
        # the tier is the path, not a field: `capabilities` vet the resolution first
        return WireRequest("POST", ENDPOINTS.get(scene.resolution, ENDPOINTS["768p"]), body)

    def priced_as(self, request: WireRequest) -> tuple[str, int] | None:
        body = request.body if isinstance(request.body, dict) else {}
        # the tier (and so the resolution billed) is the endpoint
        resolution = next((res for res, path in ENDPOINTS.items() if path == request.path), "")
        return resolution, wire_int(body.get("duration")) or 0

    async def submit(self, client: httpx.AsyncClient, request: WireRequest, key: str) -> str:
        reply = await self.call(
            client,
            "POST",
            request.path,
            body=request.body,
            idempotent=False,
            check=_check_envelope,
        )
        return submitted_job_id(self.title, "data.id", reply.body["data"].get("id", ABSENT))

    async def poll(self, client: httpx.AsyncClient, job_id: str) -> JobStatus:
        reply = await self.call(
            client,
            "GET",
            RESULT_PATH.format(id=segment(job_id)),
            idempotent=True,
            check=_check_envelope,
            job_id=job_id,
        )
        return status_of(reply.body["data"])


def status_of(data: Mapping[str, Any]) -> JobStatus:
    state = state_of(data.get("status"), STATES)
    if state == "succeeded":
        outputs = data.get("outputs") or []
        url = outputs[0] if outputs and isinstance(outputs[0], str) else None
        if url is None:
            return JobStatus("failed", error="completed without an output URL")
        return JobStatus("succeeded", output_url=url)
    if state in ("failed", "cancelled"):
        error = str(data.get("error") or data.get("status"))
        nsfw = any(bool(x) for x in data.get("has_nsfw_contents") or [])
        return JobStatus(state, error=error, refused=nsfw or is_refusal(error))
    return JobStatus(state)
