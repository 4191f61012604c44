"""MiniMax's own API: POST /v1/video_generation, query, then files/retrieve for the URL.

Facts: providers.md; platform.minimax.io docs (v2 error bodies name the same codes);
cloud.baidu.com/doc/qianfan-api/s/4mwbl4bz4 (MiniMax status_code table: 0 ok, 1000 unknown,
1001 timeout, 1002 rate limit, 1004 auth, 1008 balance, 1024 internal, 1026 sensitive prompt,
1027 sensitive output, 1033 system error, 1042 illegal characters, 2013 invalid parameters).
first_frame_image / last_frame_image take a URL or a `data:image/...;base64,` URI (MiniMax
docs as mirrored by aimlapi and several resellers); last frames are not offered at 512P.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from hailuo_pipe.errors import (
    AuthenticationError,
    ContentRefused,
    ProviderError,
    RateLimited,
    RequestRejected,
    TransientError,
)
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
from hailuo_pipe.providers.http import HostedProvider, Reply
from hailuo_pipe.storyboard.model import Scene

if TYPE_CHECKING:
    import httpx

MODEL = "MiniMax-Hailuo-02"
SUBMIT_PATH = "/v1/video_generation"
QUERY_PATH = "/v1/query/video_generation"
RETRIEVE_PATH = "/v1/files/retrieve"
# unconfirmed: MiniMax's pay-as-you-go list (per clip); not found in the stored docs
PRICES = {
    ("512p", 6): Decimal("0.10"),
    ("512p", 10): Decimal("0.15"),
    ("768p", 6): Decimal("0.28"),
    ("768p", 10): Decimal("0.56"),
    ("1080p", 6): Decimal("0.49"),
}
STATES: dict[str, State] = {
    "preparing": "queued",
    "queueing": "queued",
    "processing": "running",
    "success": "succeeded",
    "fail": "failed",  # the docs' spelling
    "failed": "failed",  # what MiniMax's official CLI types and checks
}
RATE_LIMIT = frozenset({1002, 1039})
AUTH = frozenset({1004, 2049})
REFUSED = frozenset({1026, 1027})
TRANSIENT = frozenset({1000, 1001, 1024, 1033})
# everything else (1008 balance, 1028/1030 quota, 2013 parameters, 2061 plan, …) is a rejected
# request: retrying it cannot help, the user has to act. What to do, by code:
ADVICE = {
    1002: "rate limited (too many requests); wait a minute, then rerun",
    1004: "authentication failed; check MINIMAX_API_KEY",
    1008: "insufficient balance; top up the MiniMax account, then rerun",
    1026: "the prompt was refused as sensitive; rephrase it",
    1027: "the generated video was refused as sensitive; change the prompt or images",
    1028: "usage quota exhausted; wait for it to renew or raise it, then rerun",
    1030: "usage quota exhausted; wait for it to renew or raise it, then rerun",
    2013: "invalid parameters; check the scene's fields and options",
    2049: "invalid API key; check MINIMAX_API_KEY",
    2061: "the account's plan does not include MiniMax-Hailuo-02; change the plan or provider",
}


def error_for(code: int, message: str) -> ProviderError:
    advice = ADVICE.get(code)
    text = f"MiniMax: {advice} ({code}: {message})" if advice else f"MiniMax: {message} ({code})"
    if code in RATE_LIMIT:
        return RateLimited(text, provider="minimax")
    if code in AUTH:
        return AuthenticationError(text, provider="minimax")
    if code in REFUSED:
        return ContentRefused(text, provider="minimax")
    if code in TRANSIENT:
        return TransientError(text, provider="minimax")
    return RequestRejected(text, provider="minimax")


def base_code(body: Any) -> tuple[int, str]:
    resp = body.get("base_resp") if isinstance(body, dict) else None
    if not isinstance(resp, dict):
        return 0, ""
    code = resp.get("status_code", 0)
    return (code if isinstance(code, int) else -1), str(resp.get("status_msg") or "")


def _check(reply: Reply) -> None:
    """MiniMax reports errors with HTTP 200 and a non-zero base_resp.status_code."""
    if not isinstance(reply.body, dict):
        raise TransientError(f"MiniMax: unexpected answer: {str(reply.body)[:200]}")
    code, message = base_code(reply.body)
    if code != 0:
        raise error_for(code, message)


class MiniMaxProvider(HostedProvider):
    name = "minimax"
    title = "MiniMax"
    env_prefix = "MINIMAX"
    default_base_url = "https://api.minimax.io"
    version_suffixes = ("/v1",)
    capabilities = Capabilities(
        durations={"512p": (6, 10), "768p": (6, 10), "1080p": (6,)},
        end_image=True,
        local_images=True,
    )
    prices = PRICES
    field_origins: ClassVar[Mapping[str, str]] = {
        "prompt": "prompt",
        "first_frame_image": "image",
        "last_frame_image": "end_image",
        "resolution": "resolution",
        "duration": "duration",
        "prompt_optimizer": "prompt_optimizer",
    }

    def build_request(self, scene: Scene, images: Mapping[str, str]) -> WireRequest:
        body: dict[str, Any] = {"model": MODEL, "prompt": scene.prompt}
        if "image" in images:
            body["first_frame_image"] = images["image"]
        if "end_image" in images:
            body["last_frame_image"] = images["end_image"]
        body["duration"] = scene.duration
        body["resolution"] = scene.resolution.upper()
        body["prompt_optimizer"] = scene.prompt_optimizer  # MiniMax defaults to true
        body.update(scene.options)
        return WireRequest("POST", SUBMIT_PATH, body)

    def priced_as(self, request: WireRequest) -> tuple[str, int] | None:
        body = request.body if isinstance(request.body, dict) else {}
        return wire_str(body.get("resolution")), wire_int(body.get("duration")) or 0

    async def submit(self, client: httpx.AsyncClient, request: WireRequest, key: str) -> str:
        reply = await self.call(
            client, "POST", request.path, body=request.body, idempotent=False, check=_check
        )
        task_id = reply.body.get("task_id", ABSENT)
        return submitted_job_id(self.title, "task_id", task_id, numbers=True)

    async def poll(self, client: httpx.AsyncClient, job_id: str) -> JobStatus:
        reply = await self.call(
            client,
            "GET",
            QUERY_PATH,
            params={"task_id": job_id},
            idempotent=True,
            check=_check_query,
            job_id=job_id,
        )
        body = reply.body
        state = state_of(body.get("status"), STATES)
        if state in ("failed", "cancelled"):
            code, message = base_code(body)
            error = f"{message or 'generation failed'} ({code})" if code else "generation failed"
            return JobStatus(state, error=error, refused=code in REFUSED)
        if state != "succeeded":
            return JobStatus(state)
        file_id = body.get("file_id")
        if not file_id:
            return JobStatus("failed", error="Success without a file_id")
        return JobStatus("succeeded", output_url=await self._download_url(client, str(file_id)))

    async def _download_url(self, client: httpx.AsyncClient, file_id: str) -> str | None:
        reply = await self.call(
            client,
            "GET",
            RETRIEVE_PATH,
            params={"file_id": file_id},
            idempotent=True,
            check=_check,
        )
        file = reply.body.get("file")
        url = file.get("download_url") if isinstance(file, dict) else None
        return url if isinstance(url, str) and url else None


def _check_query(reply: Reply) -> None:
    """A failed task carries its reason in base_resp: that is a state, not a call error."""
    if isinstance(reply.body, dict) and state_of(reply.body.get("status"), STATES) in (
        "failed",
        "cancelled",
    ):
        return
    _check(reply)
