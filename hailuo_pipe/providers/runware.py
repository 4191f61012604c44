"""Runware: one endpoint, a JSON array of tasks; model minimax:3@1 (Hailuo 02).

Facts: providers.md; runware.ai/docs/models/minimax-hailuo-02 (taskUUID is a client-chosen UUID
v4, outputQuality 20–99 default 95, deliveryMethod async, getResponse polling);
runware.ai/docs/en/providers/minimax (providerSettings.minimax.promptOptimizer, default false);
Runware's MiniMax model pages list 1366x768 for 768p (documented for minimax:1@1 and
minimax:4@1) and 1920x1080 for 1080p; the example for 1080p, 6 s costs $0.49.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from hailuo_pipe.errors import RequestRejected, TransientError
from hailuo_pipe.providers.base import (
    Capabilities,
    JobStatus,
    Reconciled,
    State,
    WireRequest,
    state_of,
    wire_int,
)
from hailuo_pipe.providers.http import HostedProvider, Reply, scrub
from hailuo_pipe.providers.wavespeed import is_refusal
from hailuo_pipe.storyboard.model import Scene

if TYPE_CHECKING:
    import httpx

MODEL = "minimax:3@1"
PATH = "/v1"
# build_request must be pure (fingerprints hash it), so the key is put in at submit time
PLACEHOLDER_UUID = "00000000-0000-4000-8000-000000000000"
SIZES = {
    # unconfirmed for minimax:3@1 itself: Runware documents 1366x768 for its other MiniMax
    # models at 768p; no 512p size is documented, so 512p is not offered.
    "768p": (1366, 768),
    "1080p": (1920, 1080),
}
PRICES = {
    ("1080p", 6): Decimal("0.49"),  # Runware's own example response (cost 0.49)
    # unconfirmed estimates, conservative (MiniMax list prices)
    ("768p", 6): Decimal("0.28"),
    ("768p", 10): Decimal("0.56"),
}
FPS = 25
# the HTTP status of an answer whose only content is task errors (a resent taskUUID among them)
TASK_ERROR_STATUSES = frozenset({400})
# Runware's answer to a taskUUID it already has: the official SDK (runware/base.py) takes it as
# "already submitted" and polls the task, so a resend after a lost answer creates nothing
CONFLICT_CODE = "conflicttaskuuid"


def deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """`extra` merged into `base`, which is changed and returned (callers pass a fresh dict);
    values from `extra` are copied, as they belong to the storyboard."""
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            base[key] = deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def _errors(body: Any) -> list[dict[str, Any]]:
    errors = body.get("errors") if isinstance(body, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _check(reply: Reply) -> None:
    if not isinstance(reply.body, dict):
        raise TransientError(f"Runware: unexpected answer: {str(reply.body)[:200]}")


class RunwareProvider(HostedProvider):
    name = "runware"
    title = "Runware"
    env_prefix = "RUNWARE"
    default_base_url = "https://api.runware.ai"
    version_suffixes = (PATH,)
    idempotent_submit = True
    capabilities = Capabilities(
        durations={"768p": (6, 10), "1080p": (6,)}, end_image=True, local_images=True
    )
    prices = PRICES
    field_origins: ClassVar[Mapping[str, str]] = {
        "positivePrompt": "prompt",
        "width": "resolution",
        "height": "resolution",
        "duration": "duration",
        "promptOptimizer": "prompt_optimizer",
        "frameImages": "image",
    }

    def build_request(self, scene: Scene, images: Mapping[str, str]) -> WireRequest:
        width, height = SIZES.get(scene.resolution, (0, 0))
        task: dict[str, Any] = {
            "taskType": "videoInference",
            "taskUUID": PLACEHOLDER_UUID,
            "model": MODEL,
            "positivePrompt": scene.prompt,
            "width": width,
            "height": height,
            "duration": scene.duration,
            "fps": FPS,
            "deliveryMethod": "async",
            "outputType": "URL",
            "outputFormat": "MP4",
            "includeCost": True,
            "numberResults": 1,
            "providerSettings": {"minimax": {"promptOptimizer": scene.prompt_optimizer}},
        }
        frames = [
            {"image": images[key], "frame": frame}
            for key, frame in (("image", "first"), ("end_image", "last"))
            if key in images
        ]
        if frames:
            task["inputs"] = {"frameImages": frames}
        return WireRequest("POST", PATH, [deep_merge(task, scene.options)])

    def priced_as(self, request: WireRequest) -> tuple[str, int] | None:
        task = request.body[0] if isinstance(request.body, list) and request.body else {}
        if not isinstance(task, dict):
            return None
        size = (task.get("width"), task.get("height"))
        resolution = next((res for res, wh in SIZES.items() if wh == size), "")
        return resolution, wire_int(task.get("duration")) or 0

    def with_key(self, request: WireRequest, key: str) -> list[dict[str, Any]]:
        return [{**request.body[0], "taskUUID": key}]

    async def submit(self, client: httpx.AsyncClient, request: WireRequest, key: str) -> str:
        # the taskUUID makes a resend harmless, so even a lost answer is simply sent again
        secrets = self.secrets()

        def check(reply: Reply) -> None:
            _check_submit(reply, key, secrets)

        await self.call(
            client,
            "POST",
            PATH,
            body=self.with_key(request, key),
            idempotent=True,
            check=check,
            accept=TASK_ERROR_STATUSES,
        )
        return key

    async def poll(self, client: httpx.AsyncClient, job_id: str) -> JobStatus:
        secrets = self.secrets()

        def check(reply: Reply) -> None:
            _check_poll(reply, job_id, secrets)

        reply = await self.call(
            client,
            "POST",
            PATH,
            body=[{"taskType": "getResponse", "taskUUID": job_id}],
            idempotent=True,
            check=check,
            job_id=job_id,
            accept=TASK_ERROR_STATUSES,
        )
        return status_of(reply.body, job_id)

    async def reconcile(
        self,
        client: httpx.AsyncClient,
        key: str,
        request: WireRequest,
        since: float | None = None,
    ) -> Reconciled:
        """The task is looked up by its taskUUID, which is the submission's own key. A task not
        found is no proof: one still in flight may yet arrive (a resend dedupes it anyway)."""
        status = await self.poll(client, key)
        if status.state == "failed" and status.error == NOT_FOUND:
            return Reconciled.unknown(f"Runware has no task {key} yet")
        return Reconciled.found(key, f"Runware has the task under its taskUUID {key}")


NOT_FOUND = "no task with this taskUUID"
ITEM_STATES: dict[str, State] = {"processing": "running", "success": "succeeded", "error": "failed"}


def _message(error: Mapping[str, Any]) -> str:
    return str(error.get("message") or error.get("code") or "unknown error")


def _check_submit(reply: Reply, key: str, secrets: tuple[str, ...]) -> None:
    _check(reply)
    errors = _errors(reply.body)
    for error in errors:
        conflict = str(error.get("code", "")).lower() == CONFLICT_CODE
        if conflict and error.get("taskUUID") in (None, key):
            continue  # our own earlier send created it: poll that task
        raise RequestRejected(
            scrub(f"Runware: request rejected (HTTP {reply.status}): {_message(error)}", secrets),
            provider="runware",
        )
    if not 200 <= reply.status < 300 and not errors:
        raise RequestRejected(
            scrub(f"Runware: request rejected (HTTP {reply.status}): {reply.body}", secrets),
            provider="runware",
        )


def _check_poll(reply: Reply, task_uuid: str, secrets: tuple[str, ...]) -> None:
    """An error that names another task, or none, is no verdict on ours: retry, never `failed`.

    Retries are bounded by the call's policy; after them the job stays submitted for a rerun.
    """
    _check(reply)
    errors = _errors(reply.body)
    if not errors or any(e.get("taskUUID") == task_uuid for e in errors):
        return
    items = reply.body.get("data")
    if any(isinstance(i, dict) and i.get("taskUUID") == task_uuid for i in items or []):
        return
    raise TransientError(
        scrub(f"Runware: an error naming no task of ours: {_message(errors[0])}", secrets),
        provider="runware",
        job_id=task_uuid,
    )


def status_of(body: Mapping[str, Any], task_uuid: str) -> JobStatus:
    for error in _errors(body):
        if error.get("taskUUID") == task_uuid:
            code = str(error.get("code", ""))
            if "notfound" in code.lower().replace("_", ""):
                return JobStatus("failed", error=NOT_FOUND)
            message = str(error.get("message") or code)
            return JobStatus("failed", error=message, refused=is_refusal(f"{code} {message}"))
    items = body.get("data")
    mine = [i for i in items or [] if isinstance(i, dict) and i.get("taskUUID") == task_uuid]
    if not mine:
        return JobStatus("queued")
    item = mine[0]
    status = state_of(item.get("status"), ITEM_STATES)
    if status == "succeeded":
        cost, seed = item.get("cost"), item.get("seed")
        return JobStatus(
            "succeeded",
            output_url=item.get("videoURL"),
            cost=float(cost) if isinstance(cost, int | float) else None,
            seed=seed if isinstance(seed, int) else None,
        )
    if status in ("failed", "cancelled"):
        message = str(
            item.get("error") or item.get("message") or f"the task ended {item.get('status')}"
        )
        return JobStatus(status, error=message, refused=is_refusal(message))
    return JobStatus(status)
