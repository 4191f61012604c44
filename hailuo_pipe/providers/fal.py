"""fal.ai: Hailuo 02 through fal's queue API, one endpoint per tier and per mode.

Facts (read 2026-12-02): providers.md; fal.ai/models/fal-ai/minimax/hailuo-02/standard/
image-to-video/llms.txt (prompt, image_url required, end_image_url, duration "6"|"10" as a
string, resolution "512P"|"768P" default 768P, prompt_optimizer default true; $0.045/s at 768p,
"roughly" $0.017/s at 512p, $0.27 for a 6 s 768p clip); fal.ai/models/fal-ai/minimax/
hailuo-02-fast/image-to-video/llms.txt (512p; prompt, image_url required, duration,
prompt_optimizer; no end frame; "roughly" $0.017/s); fal's queue protocol as its own client
(fal-client 1.0.3) speaks it: `POST queue.fal.run/{endpoint}` with `Authorization: Key
$FAL_KEY` answers `{request_id, status_url, response_url, cancel_url}`; the status
(`IN_QUEUE | IN_PROGRESS | COMPLETED`, a COMPLETED request may carry `error` and `error_type`)
and the result (clip at `video.url`) live under the app, `fal-ai/minimax/requests/{id}`, not
under the endpoint's path.

unsure: the standard text-to-video body (prompt, duration, prompt_optimizer; 768p only) and
the pro bodies (prompt, image_url, end_image_url, prompt_optimizer; 1080p, 6 s, no duration
field) are providers.md's reading, not confirmed on fal's pages; so is the pro price (≈$0.08/s,
$0.48 a clip) and the 512p one, rounded up to the cent so budgets are not understated.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from hailuo_pipe.errors import RequestRejected, SubmitUncertain, TransientError
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
from hailuo_pipe.providers.wavespeed import is_refusal
from hailuo_pipe.storyboard.model import Scene

if TYPE_CHECKING:
    import httpx

APP = "fal-ai/minimax"  # the app every Hailuo 02 endpoint belongs to: its requests live here
# (resolution, with a first frame) -> endpoint; 512p is image-to-video only (capabilities)
ENDPOINTS = {
    ("512p", True): "fal-ai/minimax/hailuo-02-fast/image-to-video",
    ("512p", False): "fal-ai/minimax/hailuo-02-fast/image-to-video",
    ("768p", True): "fal-ai/minimax/hailuo-02/standard/image-to-video",
    ("768p", False): "fal-ai/minimax/hailuo-02/standard/text-to-video",
    ("1080p", True): "fal-ai/minimax/hailuo-02/pro/image-to-video",
    ("1080p", False): "fal-ai/minimax/hailuo-02/pro/text-to-video",
}
TIERS = {"hailuo-02-fast/": "512p", "hailuo-02/standard/": "768p", "hailuo-02/pro/": "1080p"}
PRICES = {
    ("768p", 6): Decimal("0.27"),  # $0.045/s, fal's page
    ("768p", 10): Decimal("0.45"),
    # unsure: "roughly $0.017/s", rounded up
    ("512p", 6): Decimal("0.11"),
    ("512p", 10): Decimal("0.17"),
    ("1080p", 6): Decimal("0.48"),  # unsure: ≈$0.08/s (providers.md)
}
STATES: dict[str, State] = {"IN_QUEUE": "queued", "IN_PROGRESS": "running"}
# a finished request's result answered with these is the app's verdict on the job (fal answers
# a request its app refused, such as a flagged image or prompt, with 422 and a `detail`)
RESULT_ERRORS = frozenset({400, 422})
REFUSAL_TYPES = ("content_policy", "nsfw", "safety")


def _check(reply: Reply) -> None:
    if not isinstance(reply.body, dict):
        raise TransientError(f"fal.ai: unexpected answer: {str(reply.body)[:200]}")


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL: where a request to it, and its key, would go."""
    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:  # a port that is not a number
        return ("", "", None)
    return (parts.scheme.lower(), (parts.hostname or "").lower(), port)


class FalProvider(HostedProvider):
    name = "fal"
    title = "fal.ai"
    env_prefix = "FAL"
    api_key_variable = "FAL_KEY"  # the name fal's own clients read
    base_url_variable = "FAL_BASE_URL"
    default_base_url = "https://queue.fal.run"
    capabilities = Capabilities(
        durations={"512p": (6, 10), "768p": (6, 10), "1080p": (6,)},
        end_image=True,
        local_images=True,  # image_url takes a data URI as well as a URL
        no_end_image=("512p",),
    )
    prices = PRICES
    field_origins: ClassVar[Mapping[str, str]] = {
        "prompt": "prompt",
        "image_url": "image",
        "end_image_url": "end_image",
        "duration": "duration",
        "resolution": "resolution",
        "prompt_optimizer": "prompt_optimizer",
    }

    def __init__(self, base_url: str | None = None, api_key: str | None = None) -> None:
        super().__init__(base_url=base_url, api_key=api_key)
        # request id -> (status_url, response_url) as this process's submits were answered
        self._urls: dict[str, tuple[str, str]] = {}

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Key {self._api_key}"}

    def build_request(self, scene: Scene, images: Mapping[str, str]) -> WireRequest:
        first = "image" in images
        endpoint = ENDPOINTS.get((scene.resolution, first), ENDPOINTS[("768p", first)])
        body: dict[str, Any] = {"prompt": scene.prompt}
        if first:
            body["image_url"] = images["image"]
        if "end_image" in images:  # on a text-to-video endpoint the schema reports it
            body["end_image_url"] = images["end_image"]
        if scene.resolution != "1080p":  # pro renders 6 s and takes no duration
            body["duration"] = str(scene.duration)  # a string on fal: "6" | "10"
        if endpoint.endswith("standard/image-to-video"):
            body["resolution"] = scene.resolution.upper()  # it also takes 512P: say which
        body["prompt_optimizer"] = scene.prompt_optimizer  # fal's default is true
        body.update(scene.options)
        return WireRequest("POST", f"/{endpoint}", body)

    def priced_as(self, request: WireRequest) -> tuple[str, int] | None:
        body = request.body if isinstance(request.body, dict) else {}
        tier = next((res for part, res in TIERS.items() if part in request.path), "")
        if tier == "1080p":
            return tier, 6
        duration = body.get("duration", "6")  # a string on fal; an int only from options
        if isinstance(duration, str):
            return tier, int(duration) if duration.isdigit() else 0
        return tier, wire_int(duration) or 0

    def _same_origin(self, url: Any, what: str, request_id: str) -> str:
        """`url` if a request to it goes where the base URL's do; refused otherwise, so that no
        answer can make us send the key to another host (or in the clear)."""
        if isinstance(url, str) and origin(url) == origin(self.base_url):
            return url
        shown = origin(url) if isinstance(url, str) else ("", type(url).__name__, None)
        where = f"{shown[0]}://{shown[1]}" + (f":{shown[2]}" if shown[2] else "")
        raise RequestRejected(
            f"fal.ai: the {what} of request {request_id} points to {where}, not to "
            f"{self.url_variable()}'s host; refusing to follow it (the key is never sent "
            "elsewhere)",
            provider=self.name,
            job_id=request_id,
        )

    async def submit(self, client: httpx.AsyncClient, request: WireRequest, key: str) -> str:
        reply = await self.call(
            client, "POST", request.path, body=request.body, idempotent=False, check=_check
        )
        body = reply.body
        request_id = submitted_job_id(self.title, "request_id", body.get("request_id", ABSENT))
        try:
            urls = (
                self._same_origin(body.get("status_url"), "status_url", request_id),
                self._same_origin(body.get("response_url"), "response_url", request_id),
            )
        except RequestRejected as err:
            # the job exists (request_id) but its answer is not to be followed: park the scene
            # with the id named, so `--adopt` can wait for it at the base URL's host
            raise SubmitUncertain(
                f"{err} (request_id {request_id}; it was not sent again)", provider=self.name
            ) from None
        self._urls[request_id] = urls
        return request_id

    def _locations(self, job_id: str) -> tuple[str, str]:
        """Where a request's status and result are: as its submit answered (this process sent
        it), else where fal keeps every request of the app (a job resumed or adopted from the
        lockfile has only its id; fal's own client looks there by id too)."""
        known = self._urls.get(job_id)
        if known is not None:
            return known
        result = f"{self.base_url}/{APP}/requests/{segment(job_id)}"
        return f"{result}/status", result

    async def poll(self, client: httpx.AsyncClient, job_id: str) -> JobStatus:
        status_url, response_url = self._locations(job_id)
        reply = await self.call(
            client, "GET", status_url, idempotent=True, check=_check, job_id=job_id
        )
        body = reply.body
        word = body.get("status")
        if isinstance(word, str) and word.strip().upper() == "COMPLETED":
            if body.get("error"):
                return _failure(str(body["error"]), body.get("error_type"))
            later = body.get("response_url")
            if later is not None:
                response_url = self._same_origin(later, "response_url", job_id)
            return await self._result(client, response_url, job_id)
        return JobStatus(state_of(word, STATES, default="queued"))

    async def _result(self, client: httpx.AsyncClient, url: str, job_id: str) -> JobStatus:
        reply = await self.call(
            client, "GET", url, idempotent=True, check=_check, job_id=job_id, accept=RESULT_ERRORS
        )
        if reply.status in RESULT_ERRORS:
            return _failure(provider_message(reply.body) or f"HTTP {reply.status}", _type(reply))
        video = reply.body.get("video")
        clip = video.get("url") if isinstance(video, dict) else None
        if not isinstance(clip, str) or not clip:
            return JobStatus("failed", error="COMPLETED without a video URL")
        return JobStatus("succeeded", output_url=clip)


def _type(reply: Reply) -> str:
    detail = reply.body.get("detail") if isinstance(reply.body, dict) else None
    first = detail[0] if isinstance(detail, list) and detail else None
    return str(first.get("type", "")) if isinstance(first, dict) else ""


def _failure(message: str, kind: Any) -> JobStatus:
    kind = str(kind or "")
    refused = any(word in kind.lower() for word in REFUSAL_TYPES) or is_refusal(message)
    return JobStatus("failed", error=f"{message} ({kind})" if kind else message, refused=refused)
