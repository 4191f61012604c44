"""GMI Cloud: the request-queue API, model Minimax-Hailuo-02.

Facts: providers.md; docs.gmicloud.ai/inference-engine/api-reference/video-api-reference (submit
`{model, payload}`, observe GET …/requests/{id}, list …/requests); docs.gmicloud.ai model
quickstarts (upper-case resolution, prompt_optimizer, fast_pretreatment; the submit answer is
`{request_id, model, status: "queued", created_at, updated_at}`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from hailuo_pipe.errors import ConfigError, TransientError
from hailuo_pipe.providers.base import (
    ABSENT,
    CLOCK_SKEW,
    Capabilities,
    JobStatus,
    Provider,
    Reconciled,
    State,
    WireRequest,
    epoch_of,
    state_of,
    submitted_job_id,
    wire_int,
    wire_str,
)
from hailuo_pipe.providers.http import HostedProvider, Reply, segment
from hailuo_pipe.providers.wavespeed import is_refusal
from hailuo_pipe.storyboard.model import Scene

if TYPE_CHECKING:
    import httpx

MODEL = "Minimax-Hailuo-02"
REQUESTS_PATH = "/api/v1/ie/requestqueue/apikey/requests"
# unconfirmed: GMI publishes no price for this model ("TBD" in its docs); MiniMax's own list
# price is used as a conservative stand-in so budgets are not understated.
PRICES = {
    ("512p", 6): Decimal("0.10"),
    ("512p", 10): Decimal("0.15"),
    ("768p", 6): Decimal("0.28"),
    ("768p", 10): Decimal("0.56"),
    ("1080p", 6): Decimal("0.49"),
}
# optional: GMI routes a key that belongs to several organizations by this header; not a secret
ORGANIZATION_VARIABLE = "GMI_ORGANIZATION_ID"
STATES: dict[str, State] = {
    "created": "queued",  # the official SDK (gmicloud) lists it before queued
    "queued": "queued",
    "dispatched": "queued",  # GMI's docs
    "processing": "running",
    "success": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
}


def _check(reply: Reply) -> None:
    if not isinstance(reply.body, dict):
        raise TransientError(f"GMI Cloud: unexpected answer: {str(reply.body)[:200]}")


class GMICloudProvider(HostedProvider):
    name = "gmicloud"
    title = "GMI Cloud"
    env_prefix = "GMI"
    default_base_url = "https://console.gmicloud.ai"
    version_suffixes = (REQUESTS_PATH, "/api/v1/ie/requestqueue/apikey", "/api/v1")
    capabilities = Capabilities(
        durations={"512p": (6, 10), "768p": (6, 10), "1080p": (6,)},
        end_image=False,
        local_images=True,
    )
    prices = PRICES
    field_origins: ClassVar[Mapping[str, str]] = {
        "prompt": "prompt",
        "first_frame_image": "image",
        "resolution": "resolution",
        "duration": "duration",
        "prompt_optimizer": "prompt_optimizer",
    }

    optional_variables = (ORGANIZATION_VARIABLE,)
    organization: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Provider:
        env = os.environ if environ is None else environ
        provider = super().from_env(env)
        org = env.get(ORGANIZATION_VARIABLE, "").strip()
        # a header value with a control character could split the request (or be refused by
        # httpx mid-run): refuse it before anything is sent
        if org and not all("!" <= c <= "~" for c in org):
            raise ConfigError(
                f"{ORGANIZATION_VARIABLE} may hold only visible ASCII characters (no spaces or "
                "control characters): set it to the organization id from GMI's console, or "
                "unset it"
            )
        assert isinstance(provider, GMICloudProvider)
        provider.organization = org
        return provider

    def auth_headers(self) -> dict[str, str]:
        headers = super().auth_headers()
        if self.organization:
            headers["X-Organization-ID"] = self.organization
        return headers

    def build_request(self, scene: Scene, images: Mapping[str, str]) -> WireRequest:
        payload: dict[str, Any] = {
            "prompt": scene.prompt,
            "duration": scene.duration,
            "resolution": scene.resolution.upper(),
            # GMI's default is true: always say what the storyboard means
            "prompt_optimizer": scene.prompt_optimizer,
        }
        if "image" in images:
            payload["first_frame_image"] = images["image"]
        if "end_image" in images:  # not accepted by GMI: the schema reports it at end_image
            payload["last_frame_image"] = images["end_image"]
        payload.update(scene.options)
        return WireRequest("POST", REQUESTS_PATH, {"model": MODEL, "payload": payload})

    def priced_as(self, request: WireRequest) -> tuple[str, int] | None:
        body = request.body if isinstance(request.body, dict) else {}
        found = body.get("payload")
        payload: dict[str, Any] = found if isinstance(found, dict) else {}
        return wire_str(payload.get("resolution")), wire_int(payload.get("duration")) or 0

    async def submit(self, client: httpx.AsyncClient, request: WireRequest, key: str) -> str:
        reply = await self.call(
            client, "POST", request.path, body=request.body, idempotent=False, check=_check
        )
        return submitted_job_id(self.title, "request_id", reply.body.get("request_id", ABSENT))

    async def poll(self, client: httpx.AsyncClient, job_id: str) -> JobStatus:
        reply = await self.call(
            client,
            "GET",
            f"{REQUESTS_PATH}/{segment(job_id)}",
            idempotent=True,
            check=_check,
            job_id=job_id,
        )
        return status_of(reply.body)

    async def reconcile(
        self,
        client: httpx.AsyncClient,
        key: str,
        request: WireRequest,
        since: float | None = None,
    ) -> Reconciled:
        """The one request in GMI's list whose payload is exactly ours, created since the
        submission began. Finding none is no proof that there is none: the list's envelope
        and completeness are unconfirmed (GMI documents neither pagination nor how far back
        it goes), so a scene with no match stays parked rather than being sent again."""
        reply = await self.call(client, "GET", REQUESTS_PATH, idempotent=True, check=None)
        body = reply.body
        # unconfirmed: the list's envelope; both a bare list and {"requests": [...]} are read
        items = body.get("requests") if isinstance(body, dict) else body
        if not isinstance(items, list):
            return Reconciled.unknown("GMI Cloud's request list was not readable")
        wanted = request.body
        found: list[Any] = []
        for item in items:
            if not isinstance(item, dict) or item.get("model") != wanted["model"]:
                continue
            if item.get("payload") != wanted["payload"]:
                continue
            created = epoch_of(item.get("created_at"))
            if since is not None and created is not None and created < since - CLOCK_SKEW:
                continue  # an older request for the same payload (a render before this one)
            if since is not None and created is None:
                return Reconciled.unknown("a request with this payload has no readable date")
            found.append(item.get("request_id"))
        if len(found) == 1 and isinstance(found[0], str):
            return Reconciled.found(found[0], "by its payload in GMI Cloud's request list")
        if found:
            return Reconciled.unknown(f"{len(found)} requests in GMI Cloud's list match it")
        return Reconciled.unknown("no request in GMI Cloud's list matches it (not proof)")


def output_url(outcome: Any) -> str | None:
    """The clip URL in a finished request's outcome.

    unconfirmed in GMI's docs; public GMI clients read `outcome.media_urls[0].url` (with a
    `thumbnail_image_url` beside it), some `outcome.video_url`: both are accepted.
    """
    if not isinstance(outcome, dict):
        return None
    media = outcome.get("media_urls")
    if isinstance(media, list):
        for item in media:
            url = item.get("url") if isinstance(item, dict) else item
            if isinstance(url, str) and url:
                return url
    for key in ("video_url", "url"):
        if isinstance(outcome.get(key), str) and outcome[key]:
            return str(outcome[key])
    return None


def status_of(body: Mapping[str, Any]) -> JobStatus:
    state = state_of(body.get("status"), STATES)
    if state == "succeeded":
        url = output_url(body.get("outcome"))
        if url is None:
            return JobStatus("failed", error="finished without an artifact URL")
        return JobStatus("succeeded", output_url=url)
    if state in ("failed", "cancelled"):
        outcome = body.get("outcome")
        error = str(
            body.get("error")
            or (outcome.get("error") if isinstance(outcome, dict) else None)
            or body.get("status")
        )
        return JobStatus(state, error=error, refused=is_refusal(error))
    return JobStatus(state)
