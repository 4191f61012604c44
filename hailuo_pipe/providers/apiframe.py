"""Apiframe: POST /v2/videos/generate with model hailuo-02, poll /v2/jobs/{jobId}.

Facts: providers.md; docs-v2.apiframe.ai/docs/videos/hailuo/hailuo-02 (hailuoParams.duration
6|10 default 6, resolution "768p"|"1080p", image and end_image are URLs, prompt_optimizer;
1080p has no 10 s; credits 768p-6s 5, 768p-10s 8, 1080p-6s 10); apiframe.ai/models/hailuo-02
(≈180 s a job, charges only successful generations, "idempotency" advertised).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from hailuo_pipe.errors import TransientError
from hailuo_pipe.providers.base import (
    ABSENT,
    Capabilities,
    JobStatus,
    State,
    WireRequest,
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

MODEL = "hailuo-02"
SUBMIT_PATH = "/v2/videos/generate"
JOB_PATH = "/v2/jobs/{id}"
CREDITS = {("768p", 6): 5, ("768p", 10): 8, ("1080p", 6): 10}
# unconfirmed: the USD value of a credit depends on the plan; $0.10 is a conservative reading
CREDIT_USD = Decimal("0.10")
PRICES = {combo: credits * CREDIT_USD for combo, credits in CREDITS.items()}
# unconfirmed: the advertised idempotency mechanism is not documented; the usual header is sent
# but a lost submit is not resent on the strength of it.
IDEMPOTENCY_HEADER = "Idempotency-Key"
# options that belong beside hailuoParams: the API reference's webhookUrl / webhookEvents, and
# the model page's webhook_url
TOP_LEVEL_OPTIONS = ("webhook_url", "webhookUrl", "webhookEvents")
STATES: dict[str, State] = {
    "QUEUED": "queued",
    "PENDING": "queued",
    "STARTED": "running",
    "PROCESSING": "running",
    "IN_PROGRESS": "running",
    "COMPLETED": "succeeded",
    "FAILED": "failed",
    "CANCELLED": "cancelled",
    "CANCELED": "cancelled",
}


def _check(reply: Reply) -> None:
    if not isinstance(reply.body, dict):
        raise TransientError(f"Apiframe: unexpected answer: {str(reply.body)[:200]}")


def first_url(value: Any) -> str | None:
    """The first http(s) URL in a job's `result`, whatever shape it has."""
    if isinstance(value, str):
        return value if value.startswith(("http://", "https://")) else None
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for item in items:
        url = first_url(item)
        if url:
            return url
    return None


class ApiframeProvider(HostedProvider):
    name = "apiframe"
    title = "Apiframe"
    env_prefix = "APIFRAME"
    default_base_url = "https://api.apiframe.ai"
    version_suffixes = ("/v2",)
    capabilities = Capabilities(
        durations={"768p": (6, 10), "1080p": (6,)}, end_image=True, local_images=False
    )
    prices = PRICES
    field_origins: ClassVar[Mapping[str, str]] = {
        "prompt": "prompt",
        "image": "image",
        "end_image": "end_image",
        "resolution": "resolution",
        "duration": "duration",
        "prompt_optimizer": "prompt_optimizer",
    }

    def auth_headers(self) -> dict[str, str]:
        return {"X-API-Key": self._api_key}

    def build_request(self, scene: Scene, images: Mapping[str, str]) -> WireRequest:
        params: dict[str, Any] = {"duration": scene.duration, "resolution": scene.resolution}
        if "image" in images:
            params["image"] = images["image"]
        if "end_image" in images:
            params["end_image"] = images["end_image"]
        params["prompt_optimizer"] = scene.prompt_optimizer  # Apiframe defaults to true
        options = dict(scene.options)
        top = {k: options.pop(k) for k in TOP_LEVEL_OPTIONS if k in options}
        params.update(options)
        body = {"prompt": scene.prompt, "model": MODEL, "hailuoParams": params, **top}
        return WireRequest("POST", SUBMIT_PATH, body)

    def priced_as(self, request: WireRequest) -> tuple[str, int] | None:
        body = request.body if isinstance(request.body, dict) else {}
        found = body.get("hailuoParams")
        params: dict[str, Any] = found if isinstance(found, dict) else {}
        # Apiframe's defaults apply to what the request leaves out
        duration = wire_int(params.get("duration", 6)) or 0
        return wire_str(params.get("resolution", "768p")), duration

    async def submit(self, client: httpx.AsyncClient, request: WireRequest, key: str) -> str:
        reply = await self.call(
            client,
            "POST",
            request.path,
            body=request.body,
            headers={IDEMPOTENCY_HEADER: key},
            idempotent=False,
            check=_check,
        )
        return submitted_job_id(self.title, "jobId", reply.body.get("jobId", ABSENT))

    async def poll(self, client: httpx.AsyncClient, job_id: str) -> JobStatus:
        reply = await self.call(
            client,
            "GET",
            JOB_PATH.format(id=segment(job_id)),
            idempotent=True,
            check=_check,
            job_id=job_id,
        )
        return status_of(reply.body)


def credit_cost(credits: Any) -> float | None:
    """USD of the credits a job reports it used, at the credit price above."""
    if not isinstance(credits, int | float) or isinstance(credits, bool):
        return None
    if not math.isfinite(credits) or credits < 0:
        return None
    return float(Decimal(str(credits)) * CREDIT_USD)


def status_of(body: Mapping[str, Any]) -> JobStatus:
    state = state_of(body.get("status"), STATES)
    if state == "succeeded":
        url = first_url(body.get("result"))
        if url is None:
            return JobStatus("failed", error="COMPLETED without an output URL")
        return JobStatus("succeeded", output_url=url, cost=credit_cost(body.get("creditCost")))
    if state in ("failed", "cancelled"):
        error = body.get("error")
        if isinstance(error, dict):
            error = error.get("message") or error.get("code")
        text = str(error or body.get("status"))
        return JobStatus(state, error=text, refused=is_refusal(text))
    return JobStatus(state)
