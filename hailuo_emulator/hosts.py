"""The two hosts most users already run Hailuo 02 on: fal.ai's queue and Replicate's predictions.

Each speaks its documented wire (providers.md): fal hands out the `status_url` and
`response_url` to follow, under the app (`/fal-ai/minimax/requests/{id}`), not under the
endpoint's path; Replicate answers with prediction objects, lists them newest first in pages
whose `next` is an absolute URL, and deletes a prediction's input and output a while after it
ends (`output_lifetime`, about an hour on the real API).
"""

from __future__ import annotations

import calendar
import re
import time
from typing import Any
from urllib.parse import urlencode

from hailuo_emulator.apis import (
    FAILURE,
    PRICES,
    REFUSAL,
    Api,
    Req,
    Resp,
    _images,
    image_problem,
    schema_problem,
)
from hailuo_emulator.state import Job, State

FAL_APP = "/fal-ai/minimax"
# endpoint -> (resolution billed, takes a first frame, takes a last frame, takes a duration)
FAL_ENDPOINTS: dict[str, tuple[str, bool, bool, bool]] = {
    "/fal-ai/minimax/hailuo-02-fast/image-to-video": ("512p", True, False, True),
    "/fal-ai/minimax/hailuo-02/standard/text-to-video": ("768p", False, False, True),
    "/fal-ai/minimax/hailuo-02/standard/image-to-video": ("768p", True, True, True),
    "/fal-ai/minimax/hailuo-02/pro/text-to-video": ("1080p", False, False, False),
    "/fal-ai/minimax/hailuo-02/pro/image-to-video": ("1080p", True, True, False),
}
FAL_REQUEST = re.compile(r"^/fal-ai/minimax/requests/([^/]+)(/status)?$")
QUEUED = ("queued", "running")
REPLICATE_REFUSAL = (
    "The input or output was flagged as sensitive. Please try again with different inputs. "
    "(E005)"
)


def origin_of(req: Req, state: State) -> str:
    """The scheme://host:port put in URLs an answer hands out: the emulator's own, or the
    hostile `foreign_urls` one."""
    return str(state.config["foreign_urls"] or req.base)


def iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1e6):06d}Z"


class Fal(Api):
    name = "fal"

    def route(self, req: Req) -> str | None:
        if req.method == "POST" and req.path in FAL_ENDPOINTS:
            return "submit"
        if req.method == "GET" and FAL_REQUEST.match(req.path):
            return "poll"
        return None

    def authorised(self, req: Req, key: str) -> bool:
        return req.headers.get(self.auth_header, "") == f"Key {key}"

    def error(self, status: int, message: str, code: str = "") -> Resp:
        return Resp(status, {"detail": message})

    def invalid(self, field: str, message: str, kind: str = "value_error") -> Resp:
        detail = [{"loc": ["body", field], "msg": message, "type": kind}]
        return Resp(422, {"detail": detail})

    def handle(self, req: Req, kind: str, state: State) -> Resp:
        if kind == "poll":
            return self._request(req, state)
        body = req.body
        problem = schema_problem(self.name, body)
        if problem:
            return self.invalid(problem[0], problem[1])
        resolution, first, last, timed = FAL_ENDPOINTS[req.path]
        if first and "image_url" not in body:
            return self.invalid("image_url", "field required", "missing")
        for field_, allowed in (
            ("image_url", first),
            ("end_image_url", last),
            ("duration", timed),
            ("resolution", req.path.endswith("standard/image-to-video")),
        ):
            if field_ in body and not allowed:
                return self.invalid(field_, "extra inputs are not permitted", "extra_forbidden")
        for where, value in _images(body, ("image_url",), ("end_image_url",)):
            if (why := image_problem(value)) is not None:
                return self.invalid(where, why, "image_load_error")
        resolution = str(body.get("resolution", resolution)).lower()
        job, _ = state.create_job(
            self.name, body, key=None, resolution=resolution, cost=PRICES[resolution]
        )
        base = f"{origin_of(req, state)}{FAL_APP}/requests/{job.id}"
        return Resp(
            200,
            {
                "request_id": job.id,
                "response_url": base,
                "status_url": f"{base}/status",
                "cancel_url": f"{base}/cancel",
                "queue_position": 0,
            },
        )

    def _request(self, req: Req, state: State) -> Resp:
        match = FAL_REQUEST.match(req.path)
        job = state.job(self.name, match.group(1)) if match else None
        if job is None:
            return self.error(404, "Request not found")
        phase = job.phase()
        result_url = f"{origin_of(req, state)}{FAL_APP}/requests/{job.id}"
        if match and match.group(2):  # the status
            if phase in ("queued", "running"):
                word = "IN_QUEUE" if phase == "queued" else "IN_PROGRESS"
                view: dict[str, Any] = {"status": word, "response_url": result_url}
                if phase == "queued":
                    view["queue_position"] = 0
                else:
                    view["logs"] = []
                return Resp(202, view)  # accepted, not done
            view = {
                "status": "COMPLETED",
                "response_url": result_url,
                "logs": [],
                "metrics": {"inference_time": job.seconds},
            }
            if phase == "fail":  # fal's newer status answers name a failure themselves
                view.update(error=FAILURE, error_type="runtime_error")
            return Resp(200, view)
        if phase in ("queued", "running"):
            return self.error(400, "Request is still in progress")
        if phase == "refuse":  # the app refused what it made: a 422 from the result
            return self.invalid("prompt", REFUSAL, "content_policy_violation")
        if phase == "fail":
            return self.error(500, FAILURE)
        return Resp(
            200,
            {
                "video": {
                    "url": self.clip_url(req, job),
                    "content_type": "video/mp4",
                    "file_name": "output.mp4",
                }
            },
        )


class Replicate(Api):
    name = "replicate"
    SUBMIT = "/v1/models/minimax/hailuo-02/predictions"
    LIST = "/v1/predictions"
    ONE = re.compile(r"^/v1/predictions/([^/]+)$")

    def route(self, req: Req) -> str | None:
        if req.method == "POST" and req.path == self.SUBMIT:
            return "submit"
        if req.method == "GET" and req.path == self.LIST:
            return "list"
        if req.method == "GET" and self.ONE.match(req.path):
            return "poll"
        return None

    def error(self, status: int, message: str, code: str = "") -> Resp:
        title = {401: "Unauthenticated", 404: "Not found", 422: "Input validation failed"}
        return Resp(
            status,
            {"title": title.get(status, "Error"), "detail": message, "status": status},
            {"Content-Type": "application/problem+json"},
        )

    def unauthorised(self) -> Resp:
        return self.error(401, "You did not pass a valid authentication token")

    def handle(self, req: Req, kind: str, state: State) -> Resp:
        if kind == "list":
            return self._list(req, state)
        if kind == "poll":
            match = self.ONE.match(req.path)
            job = state.job(self.name, match.group(1)) if match else None
            if job is None:
                return self.error(404, "The requested resource could not be found.")
            return Resp(200, self._view(req, job, state))
        problem = schema_problem(self.name, req.body)
        if problem:
            return self.error(422, f"- {problem[0]}: {problem[1]}")
        data = req.body["input"]
        for where, value in _images(data, ("first_frame_image",), ("last_frame_image",)):
            if (why := image_problem(value)) is not None:
                return self.error(422, f"- input.{where}: {why}")
        resolution = str(data.get("resolution", "1080p"))
        job, _ = state.create_job(
            self.name, req.body, key=None, resolution=resolution, cost=PRICES[resolution]
        )
        return Resp(201, self._view(req, job, state))

    def _view(self, req: Req, job: Job, state: State) -> dict[str, Any]:
        phase = job.phase()
        removed = phase not in QUEUED and job.removed(
            state.config["output_lifetime"]
        )
        status = {"queued": "starting", "running": "processing", "ok": "succeeded"}.get(
            phase, "failed"
        )
        api = f"{req.base}/v1/predictions/{job.id}"
        view: dict[str, Any] = {
            "id": job.id,
            "model": "minimax/hailuo-02",
            "version": "hidden",  # official models hide their version
            "input": {} if removed else job.body["input"],
            "logs": "",
            "output": self.clip_url(req, job) if phase == "ok" and not removed else None,
            "data_removed": removed,
            "error": None,
            "status": status,
            "source": "api",
            "created_at": iso(job.wall),
            "started_at": iso(job.wall) if phase != "queued" else None,
            "completed_at": iso(job.wall + job.seconds) if phase not in QUEUED else None,
            "urls": {"get": api, "cancel": f"{api}/cancel", "web": f"{req.base}/p/{job.id}"},
            "metrics": {"predict_time": job.seconds} if status == "succeeded" else {},
        }
        if phase == "fail":
            view["error"] = FAILURE
        elif phase == "refuse":
            view["error"] = REPLICATE_REFUSAL
        return view

    def _list(self, req: Req, state: State) -> Resp:
        """The account's predictions, newest first, `list_page_size` a page."""
        after = req.query.get("created_after")
        since = _epoch(after) if after else None
        with state.lock:
            mine = [j for j in state.jobs.values() if j.provider == self.name]
            size = max(1, int(state.config["list_page_size"] or 100))
        mine = sorted(
            (j for j in mine if since is None or j.wall >= since), key=lambda j: -j.serial
        )
        start = int(req.query.get("cursor", "0") or 0)
        page = mine[start : start + size]
        following = None
        if start + size < len(mine):
            query = {k: v for k, v in req.query.items() if k != "cursor"}
            query["cursor"] = str(start + size)
            following = f"{origin_of(req, state)}{self.LIST}?{urlencode(query)}"
        previous = None
        if start:
            query = {**req.query, "cursor": str(max(0, start - size))}
            previous = f"{req.base}{self.LIST}?{urlencode(query)}"
        results = [self._view(req, j, state) for j in page]
        return Resp(200, {"next": following, "previous": previous, "results": results})


def _epoch(text: str) -> float | None:
    try:
        parts = time.strptime(text.rstrip("Z")[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None
    return float(calendar.timegm(parts))


def removed_file(job: Job, state: State) -> bool:
    """A clip Replicate already deleted: its download URL answers 404."""
    return job.provider == Replicate.name and job.removed(state.config["output_lifetime"])
