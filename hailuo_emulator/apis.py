"""The wire formats: routing, strict validation, and each API's own answer shapes (the two
hosts, fal.ai and Replicate, in hosts.py)."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlparse

from jsonschema import Draft202012Validator

from hailuo_emulator.state import Job, State
from hailuo_pipe.storyboard.schemas import load_schema

UUID_V4 = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", re.IGNORECASE
)
DATA_URI = re.compile(r"^data:image/(jpeg|jpg|png);base64,(.+)$", re.DOTALL)
MAGIC = {"jpeg": b"\xff\xd8\xff", "jpg": b"\xff\xd8\xff", "png": b"\x89PNG\r\n\x1a\n"}
PRICES = {"512p": 0.10, "768p": 0.28, "1080p": 0.49}


@dataclass(frozen=True)
class Req:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names
    body: Any
    base: str  # http://host:port, for URLs the emulator hands out


@dataclass(frozen=True)
class Resp:
    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


def image_problem(value: Any, *, allow_uuid: bool = False) -> str | None:
    """Why `value` is not an image the real API would fetch or decode, or None."""
    if not isinstance(value, str) or not value:
        return "image must be a non-empty string"
    if value.startswith(("http://", "https://")):
        return None if urlparse(value).hostname else f"image URL has no host: {value[:60]}"
    if allow_uuid and UUID_V4.match(value):
        return None
    match = DATA_URI.match(value)
    if not match:
        return "image must be an http(s) URL or a data:image/jpeg|png;base64 URI"
    try:
        data = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        return "image data URI is not valid base64"
    if not data.startswith(MAGIC[match.group(1)]):
        return f"image data is not a {match.group(1).upper()} file"
    return None


def schema_problem(name: str, body: Any) -> tuple[str, str] | None:
    """(field, message) of the first way `body` breaks the provider's published contract."""
    errors = sorted(
        Draft202012Validator(load_schema(f"providers/{name}")).iter_errors(body),
        key=lambda e: list(map(str, e.absolute_path)),
    )
    if not errors:
        return None
    err = errors[0]
    where = ".".join(str(p) for p in err.absolute_path) or "body"
    return where, err.message


class Api:
    name = ""
    auth_header = "authorization"

    def route(self, req: Req) -> str | None:
        """The kind of request ('submit' or 'poll') when it is this API's, else None."""
        raise NotImplementedError

    def authorised(self, req: Req, key: str) -> bool:
        return req.headers.get(self.auth_header, "") == f"Bearer {key}"

    def handle(self, req: Req, kind: str, state: State) -> Resp:
        raise NotImplementedError

    # error answers in this API's own shape
    def error(self, status: int, message: str, code: str = "") -> Resp:
        raise NotImplementedError

    def unauthorised(self) -> Resp:
        return self.error(401, "Unauthorized: invalid or missing API key", "unauthorized")

    def rate_limited(self, retry_after: float | None) -> Resp:
        resp = self.error(429, "Too many requests, please slow down", "rateLimited")
        if retry_after is None:
            return resp
        return Resp(resp.status, resp.body, {**resp.headers, "Retry-After": f"{retry_after:g}"})

    def server_error(self, status: int) -> Resp:
        return self.error(status, "internal server error", "internalError")

    def clip_url(self, req: Req, job: Job) -> str:
        return f"{req.base}/_files/{job.id}.mp4"


def _images(body: Any, *paths: tuple[str, ...]) -> list[tuple[str, Any]]:
    out = []
    for path in paths:
        node = body
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            out.append((".".join(path), node))
    return out


REFUSAL = "content flagged as sensitive (nsfw) by the safety checker"
FAILURE = "generation failed: internal inference error"


class WaveSpeed(Api):
    name = "wavespeed"
    SUBMIT: ClassVar[dict[str, str]] = {
        "/api/v3/minimax/hailuo-02/fast": "512p",
        "/api/v3/minimax/hailuo-02/standard": "768p",
        "/api/v3/minimax/hailuo-02/pro": "1080p",
    }
    RESULT = re.compile(r"^/api/v3/predictions/([^/]+)(/result)?$")

    def route(self, req: Req) -> str | None:
        if req.method == "POST" and req.path in self.SUBMIT:
            return "submit"
        if req.method == "GET" and self.RESULT.match(req.path):
            return "poll"
        return None

    def error(self, status: int, message: str, code: str = "") -> Resp:
        return Resp(status, {"code": status, "message": message, "data": None})

    def handle(self, req: Req, kind: str, state: State) -> Resp:
        if kind == "poll":
            match = self.RESULT.match(req.path)
            job = state.job(self.name, match.group(1)) if match else None
            if job is None:
                return self.error(404, "prediction not found")
            return Resp(200, {"code": 200, "message": "success", "data": self._data(req, job)})
        body = req.body
        resolution = self.SUBMIT[req.path]
        problem = schema_problem(self.name, body)
        if problem:
            return self.error(400, f"invalid parameter {problem[0]}: {problem[1]}")
        if resolution == "1080p" and body.get("duration", 6) != 6:
            return self.error(400, "invalid parameter duration: pro supports 6 seconds only")
        if resolution == "512p" and "image" not in body:
            return self.error(400, "invalid parameter image: image is required")
        if resolution == "512p" and "end_image" in body:
            return self.error(400, "invalid parameter end_image: not supported by fast")
        if resolution != "512p" and "go_fast" in body:
            return self.error(400, "invalid parameter go_fast: only the fast model takes it")
        for where, value in _images(body, ("image",), ("end_image",)):
            if (why := image_problem(value)) is not None:
                return self.error(400, f"invalid parameter {where}: {why}")
        job, _ = state.create_job(
            self.name, body, key=None, resolution=resolution, cost=PRICES[resolution]
        )
        return Resp(200, {"code": 200, "message": "success", "data": self._data(req, job)})

    def _data(self, req: Req, job: Job) -> dict[str, Any]:
        phase = job.phase()
        status = {"queued": "created", "running": "processing", "ok": "completed"}.get(
            phase, "failed"
        )
        return {
            "id": job.id,
            "model": "minimax/hailuo-02",
            "outputs": [self.clip_url(req, job)] if phase == "ok" else [],
            "urls": {"get": f"{req.base}/api/v3/predictions/{job.id}/result"},
            "has_nsfw_contents": [True] if phase == "refuse" else [],
            "status": status,
            "created_at": "2025-01-01T00:00:00Z",
            "error": REFUSAL if phase == "refuse" else FAILURE if phase == "fail" else "",
            "timings": {"inference": int(job.seconds * 1000)},
        }


class GMICloud(Api):
    name = "gmicloud"
    ROOT = "/api/v1/ie/requestqueue/apikey/requests"

    def route(self, req: Req) -> str | None:
        if req.path == self.ROOT:
            return "submit" if req.method == "POST" else "list" if req.method == "GET" else None
        if req.method == "GET" and req.path.startswith(self.ROOT + "/"):
            return "poll"
        return None

    def error(self, status: int, message: str, code: str = "") -> Resp:
        return Resp(status, {"error": message})

    def handle(self, req: Req, kind: str, state: State) -> Resp:
        if kind == "list":
            with state.lock:
                mine = [j for j in state.jobs.values() if j.provider == self.name]
            return Resp(200, {"requests": [self._view(req, j) for j in mine], "total": len(mine)})
        if kind == "poll":
            job = state.job(self.name, req.path.rsplit("/", 1)[1])
            if job is None:
                return self.error(404, "request not found")
            return Resp(200, self._view(req, job))
        problem = schema_problem(self.name, req.body)
        if problem:
            return self.error(400, f"invalid payload: {problem[0]}: {problem[1]}")
        payload = req.body["payload"]
        for where, value in _images(payload, ("first_frame_image",)):
            if (why := image_problem(value)) is not None:
                return self.error(400, f"invalid payload: {where}: {why}")
        resolution = str(payload.get("resolution", "768P")).lower()
        job, _ = state.create_job(
            self.name, req.body, key=None, resolution=resolution, cost=PRICES[resolution]
        )
        view = self._view(req, job)
        return Resp(200, {k: view[k] for k in ("request_id", "model", "status", "created_at")})

    def _view(self, req: Req, job: Job) -> dict[str, Any]:
        phase = job.phase()
        status = {"queued": "queued", "running": "processing", "ok": "success"}.get(phase, "failed")
        outcome: dict[str, Any] | None = None
        if phase == "ok":
            url = self.clip_url(req, job)
            outcome = {"media_urls": [{"id": job.id, "url": url}], "thumbnail_image_url": ""}
        return {
            "request_id": job.id,
            "model": job.body["model"],
            "payload": job.body["payload"],
            "status": status,
            "outcome": outcome,
            "error": REFUSAL if phase == "refuse" else FAILURE if phase == "fail" else None,
            "created_at": int(job.wall),
            "updated_at": int(job.wall),
        }


class MiniMax(Api):
    name = "minimax"

    def route(self, req: Req) -> str | None:
        if req.method == "POST" and req.path == "/v1/video_generation":
            return "submit"
        if req.method == "GET" and req.path in ("/v1/query/video_generation", "/v1/files/retrieve"):
            return "poll"
        return None

    def error(self, status: int, message: str, code: str = "") -> Resp:
        # MiniMax answers errors with HTTP 200 and a base_resp status code
        numeric = {401: 1004, 429: 1002, 400: 2013, 404: 2013}.get(status, 1000)
        http = 200 if status < 500 else status
        return Resp(http, {"base_resp": {"status_code": numeric, "status_msg": message}})

    def unauthorised(self) -> Resp:
        return Resp(
            200,
            {
                "base_resp": {
                    "status_code": 1004,
                    "status_msg": "login fail: "
                    "Please carry the API secret key in the 'Authorization' field",
                }
            },
        )

    def handle(self, req: Req, kind: str, state: State) -> Resp:
        if req.path == "/v1/query/video_generation":
            return self._query(req, state)
        if req.path == "/v1/files/retrieve":
            return self._retrieve(req, state)
        problem = schema_problem(self.name, req.body)
        if problem:
            return self.error(400, f"invalid params, {problem[0]}: {problem[1]}")
        for where, value in _images(req.body, ("first_frame_image",), ("last_frame_image",)):
            if (why := image_problem(value)) is not None:
                return self.error(400, f"invalid params, {where}: {why}")
        resolution = str(req.body.get("resolution", "768P")).lower()
        job, _ = state.create_job(
            self.name, req.body, key=None, resolution=resolution, cost=PRICES[resolution]
        )
        return Resp(
            200, {"task_id": job.id, "base_resp": {"status_code": 0, "status_msg": "success"}}
        )

    def _query(self, req: Req, state: State) -> Resp:
        job = state.job(self.name, req.query.get("task_id", ""))
        if job is None:
            return self.error(400, "invalid params, task_id not found")
        phase = job.phase()
        status = {"queued": "Queueing", "running": "Processing", "ok": "Success"}.get(
            phase, state.config["fail_status"] or "Fail"
        )
        base = {"status_code": 0, "status_msg": "success"}
        if phase == "refuse":
            base = {"status_code": 1027, "status_msg": "generated video contains sensitive content"}
        elif phase == "fail":
            base = {"status_code": 1000, "status_msg": "unknown error"}
        width, height = {"512p": (912, 512), "1080p": (1920, 1080)}.get(job.resolution, (1366, 768))
        return Resp(
            200,
            {
                "task_id": job.id,
                "status": status,
                "file_id": f"f{job.id}" if phase == "ok" else "",
                "video_width": width if phase == "ok" else 0,
                "video_height": height if phase == "ok" else 0,
                "base_resp": base,
            },
        )

    def _retrieve(self, req: Req, state: State) -> Resp:
        file_id = req.query.get("file_id", "")
        job = state.job(self.name, file_id[1:]) if file_id.startswith("f") else None
        if job is None or job.phase() != "ok":
            return self.error(404, "file not found")
        return Resp(
            200,
            {
                "file": {
                    "file_id": file_id,
                    "bytes": 0,
                    "created_at": int(job.wall),
                    "filename": "output.mp4",
                    "purpose": "video_generation",
                    "download_url": self.clip_url(req, job),
                },
                "base_resp": {"status_code": 0, "status_msg": "success"},
            },
        )


class Runware(Api):
    name = "runware"

    def route(self, req: Req) -> str | None:
        if req.method != "POST" or req.path != "/v1" or not isinstance(req.body, list):
            return None
        kinds = {t.get("taskType") for t in req.body if isinstance(t, dict)}
        return "poll" if kinds == {"getResponse"} else "submit"

    def error(self, status: int, message: str, code: str = "", **extra: Any) -> Resp:
        entry = {"code": code or "error", "message": message, "type": "error", **extra}
        return Resp(status, {"errors": [entry]})

    def unauthorised(self) -> Resp:
        return self.error(401, "Invalid API key. Get one at https://my.runware.ai", "invalidApiKey")

    def handle(self, req: Req, kind: str, state: State) -> Resp:
        if kind == "poll":
            return self._poll(req, state)
        problem = schema_problem(self.name, req.body)
        task = req.body[0] if req.body and isinstance(req.body[0], dict) else {}
        uuid = task.get("taskUUID")
        if problem:
            field_ = problem[0].split(".")[-1]
            return self.error(400, problem[1], "invalidParameter", parameter=field_, taskUUID=uuid)
        frames = task.get("inputs", {}).get("frameImages", [])
        for frame in frames:
            if (why := image_problem(frame.get("image"), allow_uuid=True)) is not None:
                return self.error(
                    400, why, "invalidFrameImage", parameter="inputs.frameImages", taskUUID=uuid
                )
        resolution = "1080p" if task["height"] == 1080 else "768p"
        _, created = state.create_job(
            self.name, task, key=uuid, resolution=resolution, cost=PRICES[resolution]
        )
        if not created:  # what Runware answers a resend of a taskUUID it already has
            return Resp(
                400,
                {
                    "data": [],
                    "errors": [
                        {
                            "code": "conflictTaskUUID",
                            "message": f"Task {uuid} already exists. "
                            "Use a unique taskUUID for each request.",
                            "parameter": "taskUUID",
                            "type": "string",
                            "taskUUID": uuid,
                            "context": {
                                "taskType": "videoInference",
                                "taskUUID": uuid,
                                "deliveryMethod": "async",
                            },
                        }
                    ],
                },
            )
        return Resp(200, {"data": [{"taskType": "videoInference", "taskUUID": uuid}]})

    def _poll(self, req: Req, state: State) -> Resp:
        with state.lock:
            anonymous = int(state.config["anonymous_poll_errors"] or 0)
            if anonymous:
                state.config["anonymous_poll_errors"] = anonymous - 1
        if anonymous:  # an error about the request, not about any task
            return self.error(400, "internal error, please retry", "internalServerError")
        data, errors = [], []
        for task in req.body:
            uuid = task.get("taskUUID", "")
            job = state.job(self.name, uuid)
            if job is None:
                errors.append(
                    {
                        "code": "taskNotFound",
                        "message": "no task with this taskUUID",
                        "taskUUID": uuid,
                        "type": "error",
                    }
                )
                continue
            phase = job.phase()
            if phase in ("fail", "refuse"):
                errors.append(
                    {
                        "code": "contentModeration" if phase == "refuse" else "inferenceFailed",
                        "message": REFUSAL if phase == "refuse" else FAILURE,
                        "taskUUID": uuid,
                        "type": "error",
                    }
                )
                continue
            item: dict[str, Any] = {
                "taskType": "videoInference",
                "taskUUID": uuid,
                "status": "success" if phase == "ok" else "processing",
            }
            if phase == "ok":
                item.update(
                    videoUUID=job.id[::-1],
                    videoURL=self.clip_url(req, job),
                    seed=job.seed,
                    cost=job.cost,
                )
            data.append(item)
        body: dict[str, Any] = {"data": data}
        if errors:
            body["errors"] = errors
        return Resp(200 if data or not errors else 400, body)


class Apiframe(Api):
    name = "apiframe"
    auth_header = "x-api-key"
    JOB = re.compile(r"^/v2/jobs/([^/]+)$")

    def route(self, req: Req) -> str | None:
        if req.method == "POST" and req.path == "/v2/videos/generate":
            return "submit"
        if req.method == "GET" and self.JOB.match(req.path):
            return "poll"
        return None

    def authorised(self, req: Req, key: str) -> bool:
        return req.headers.get(self.auth_header, "") == key

    def error(self, status: int, message: str, code: str = "") -> Resp:
        return Resp(status, {"error": {"code": code.upper() or "ERROR", "message": message}})

    def handle(self, req: Req, kind: str, state: State) -> Resp:
        if kind == "poll":
            match = self.JOB.match(req.path)
            job = state.job(self.name, match.group(1)) if match else None
            if job is None:
                return self.error(404, "job not found", "not_found")
            return Resp(200, self._view(req, job))
        problem = schema_problem(self.name, req.body)
        if problem:
            return self.error(400, f"{problem[0]}: {problem[1]}", "validation_error")
        params = req.body["hailuoParams"]
        for where, value in _images(params, ("image",), ("end_image",)):
            if not (isinstance(value, str) and value.startswith(("http://", "https://"))):
                return self.error(
                    400, f"hailuoParams.{where} must be an image URL", "validation_error"
                )
        resolution = params.get("resolution", "768p")
        key = req.headers.get("idempotency-key") or None
        job, _ = state.create_job(
            self.name, req.body, key=key, resolution=resolution, cost=PRICES[resolution]
        )
        return Resp(202, {"jobId": job.id, "status": "QUEUED"})

    def _view(self, req: Req, job: Job) -> dict[str, Any]:
        phase = job.phase()
        status = {"queued": "QUEUED", "running": "PROCESSING", "ok": "COMPLETED"}.get(
            phase, "FAILED"
        )
        ten = job.body["hailuoParams"].get("duration") == 10
        credits = 10 if job.resolution == "1080p" else 8 if ten else 5
        view: dict[str, Any] = {
            "jobId": job.id,
            "status": status,
            "model": "hailuo-02",
            "creditCost": 0 if phase in ("fail", "refuse") else credits,  # refunded on failure
        }
        if phase == "ok":
            view["result"] = {"urls": [self.clip_url(req, job)]}
        elif phase in ("fail", "refuse"):
            view["error"] = {
                "code": phase.upper(),
                "message": REFUSAL if phase == "refuse" else FAILURE,
            }
        return view


# the two hosts' module builds on the helpers above, so it is imported once they exist
from hailuo_emulator.hosts import Fal, Replicate  # noqa: E402

# Runware first: it owns POST /v1 with an array body, MiniMax owns the named /v1 paths;
# Replicate's are /v1/models/… and /v1/predictions…, fal's /fal-ai/….
APIS: tuple[Api, ...] = (
    Runware(),
    WaveSpeed(),
    GMICloud(),
    MiniMax(),
    Apiframe(),
    Fal(),
    Replicate(),
)


def route(req: Req) -> tuple[Api, str] | None:
    for api in APIS:
        kind = api.route(req)
        if kind is not None:
            return api, kind
    return None
