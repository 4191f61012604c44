"""The emulator's memory: switches, jobs, the request log. Shared by all handler threads."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

DEFAULT_KEY = "test-key"
PROVIDERS = ("wavespeed", "gmicloud", "minimax", "runware", "apiframe", "fal", "replicate")

# switch -> request kinds it hits unless the switch says otherwise ("on")
FAULT_SWITCHES = {
    "rate_limit": ("submit", "poll"),
    "server_error": ("submit", "poll"),
    "timeout": ("submit", "poll"),
    "drop": ("submit", "poll"),
    "malformed_json": ("submit", "poll"),
    "truncate_downloads": ("download",),
    # a 2xx submit answer whose job id is {"value": X} (any JSON) or, without "value", absent
    "bad_job_id": ("submit",),
}
# a provider's list of jobs (GMI's requests, Replicate's predictions) is the kind "list": a
# fault hits it only when its switch says {"on": "list"}
RATE_SWITCHES = ("fail_jobs", "refuse_content")


@dataclass(frozen=True)
class Fault:
    """When a fault switch fires: a probability, every Nth matching request, at most `count`."""

    name: str
    p: float = 0.0
    every: int = 0
    on: tuple[str, ...] = ()
    count: int | None = None
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @classmethod
    def parse(cls, name: str, value: Any) -> Fault | None:
        if value in (None, False, 0):
            return None
        default_on = FAULT_SWITCHES[name]
        if value is True:
            return cls(name, p=1.0, on=default_on)
        if isinstance(value, int | float):
            return cls(name, p=float(value), on=default_on)
        if not isinstance(value, dict):
            raise ValueError(f"{name}: expected a number or an object, not {value!r}")
        on = value.get("on", default_on)
        on = (on,) if isinstance(on, str) else tuple(on)
        known = {"p", "every", "on", "count"}
        every = int(value.get("every", 0))
        p = float(value.get("p", 0.0 if every else 1.0))
        count = value.get("count")
        extra = {k: v for k, v in value.items() if k not in known}
        return cls(name, p=p, every=every, on=on, count=count, options=extra)


@dataclass
class Job:
    id: str
    provider: str
    created: float
    seconds: float
    outcome: str  # ok | fail | refuse
    body: Any
    seed: int
    cost: float
    resolution: str = "768p"
    duration: int = 6  # the clip's seconds, as the request asked
    key: str | None = None  # taskUUID / Idempotency-Key that created it
    serial: int = 0  # how many jobs came before it: picks the clip it serves
    wall: float = 0.0  # time.time() at creation: the created_at an API reports

    def phase(self, now: float | None = None) -> str:
        """queued | running | ok | fail | refuse."""
        elapsed = (time.monotonic() if now is None else now) - self.created
        if elapsed >= self.seconds:
            return self.outcome
        return "queued" if elapsed < 0.1 * self.seconds else "running"

    def removed(self, lifetime: float | None) -> bool:
        """Whether its input and output were deleted (Replicate: about an hour after it ends)."""
        if lifetime is None:
            return False
        return time.monotonic() - self.created >= self.seconds + float(lifetime)


DEFAULTS: dict[str, Any] = {
    "job_seconds": 0.5,
    "latency": 0.0,
    "fail_jobs": 0.0,
    "refuse_content": 0.0,
    "fail_prompt": None,  # a job whose request contains this text fails (to target one scene)
    # the status word a failed job reports instead of the API's own (MiniMax's CLI: "Failed")
    "fail_status": None,
    # Runware: this many polls are answered with an error that names no task (a count)
    "anonymous_poll_errors": 0,
    "expire_outputs": False,
    # seconds after a job ends when its input and output are deleted (Replicate keeps them
    # about an hour); None keeps them
    "output_lifetime": None,
    # predictions a page of Replicate's list holds (100 on the real API)
    "list_page_size": 100,
    # hostile: the origin (scheme://host:port) put in the URLs an answer hands out to follow
    # (fal's status_url / response_url, Replicate's next page) instead of the emulator's own
    "foreign_urls": None,
    "output_bytes": 0,
    "clip_path": None,
    "seed": 0,
    "key": DEFAULT_KEY,
    # hostile answers (a broken or malicious provider)
    "job_id": None,  # the id every submit answer gives instead of the job's own
    "echo_auth": None,  # raw|base64|hex|url|json: every API answer is a 401 echoing that form
    "answer_padding": 0,  # bytes of filler added to every poll answer
    "deep_json": 0,  # every poll answer is a JSON array nested this deep
    "trickle_downloads": None,  # {"bytes": N, "every": S}: a clip sent N bytes each S seconds
    "gzip_downloads": False,  # clips sent gzip-compressed with Content-Encoding: gzip
    **dict.fromkeys(FAULT_SWITCHES),
}


class State:
    def __init__(self, **overrides: Any) -> None:
        self.lock = threading.Lock()
        self._base = {**DEFAULTS, **overrides}
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.config: dict[str, Any] = dict(self._base)
            self.faults: dict[str, Fault] = {}
            self.hits: Counter[str] = Counter()
            self.fired: Counter[str] = Counter()
            self.jobs: dict[str, Job] = {}
            self.by_key: dict[tuple[str, str], str] = {}
            self.created: Counter[str] = Counter()
            self.log: list[dict[str, Any]] = []
            self.rng = random.Random(self.config["seed"])
        self.configure({})

    def configure(self, switches: dict[str, Any]) -> None:
        unknown = set(switches) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown switches: {', '.join(sorted(unknown))}")
        with self.lock:
            self.config.update(switches)
            if "seed" in switches:
                self.rng = random.Random(switches["seed"])
            for name in FAULT_SWITCHES:
                fault = Fault.parse(name, self.config[name])
                if fault is None:
                    self.faults.pop(name, None)
                else:
                    self.faults[name] = fault
                    if name in switches:
                        self.hits[name] = self.fired[name] = 0

    def fires(self, name: str, kind: str) -> Fault | None:
        """Whether fault `name` hits this request of `kind` (counted, reproducible)."""
        with self.lock:
            fault = self.faults.get(name)
            if fault is None or kind not in fault.on:
                return None
            if fault.count is not None and self.fired[name] >= fault.count:
                return None
            self.hits[name] += 1
            # every-Nth is deterministic; a probability draws from the seeded generator
            hit = self.hits[name] % fault.every == 0 if fault.every else self.rng.random() < fault.p
            if hit:
                self.fired[name] += 1
                return fault
            return None

    def chance(self, name: str) -> bool:
        with self.lock:
            return self.rng.random() < float(self.config[name] or 0.0)

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.log.append(entry)

    def create_job(
        self, provider: str, body: Any, *, key: str | None, resolution: str, cost: float
    ) -> tuple[Job, bool]:
        """A new paid job, or the one this key already created (then False)."""
        refuse = self.chance("refuse_content")
        marker = self.config["fail_prompt"]
        fail = not refuse and (self.chance("fail_jobs") or bool(marker and marker in str(body)))
        with self.lock:
            if key is not None and (provider, key) in self.by_key:
                return self.jobs[self.by_key[(provider, key)]], False
            job_id = key if provider == "runware" and key else uuid.uuid4().hex
            if provider == "fal":
                job_id = str(uuid.UUID(job_id))  # fal's request ids are dashed UUIDs
            job = Job(
                id=job_id,
                provider=provider,
                created=time.monotonic(),
                seconds=float(self.config["job_seconds"]),
                outcome="refuse" if refuse else "fail" if fail else "ok",
                body=body,
                seed=self.rng.randrange(1, 2**31),
                cost=cost,
                resolution=resolution,
                duration=duration_of(body),
                key=key,
                serial=sum(self.created.values()),
                wall=time.time(),
            )
            self.jobs[job.id] = job
            if key is not None:
                self.by_key[(provider, key)] = job.id
            self.created[provider] += 1
            return job, True

    def job(self, provider: str, job_id: str) -> Job | None:
        with self.lock:
            job = self.jobs.get(job_id)
        return job if job is not None and job.provider == provider else None

    def job_list(self) -> list[dict[str, Any]]:
        """Every paid job, oldest first: what a provider's dashboard would show a user."""
        with self.lock:
            jobs = sorted(self.jobs.values(), key=lambda j: j.serial)
            return [
                {
                    "id": j.id,
                    "provider": j.provider,
                    "body": j.body,
                    "outcome": j.outcome,
                    "created": j.wall,
                }
                for j in jobs
            ]

    def counts(self) -> dict[str, int]:
        with self.lock:
            out = {name: self.created[name] for name in PROVIDERS}
        out["total"] = sum(out.values())
        return out


def duration_of(body: Any) -> int:
    """The clip length a request asks for, wherever its wire format puts it (`duration`, in
    `payload`, `hailuoParams` or `input`; a string for fal): 6 when it says none."""
    if isinstance(body, dict):
        value = body.get("duration")
        if str(value) in ("6", "10"):
            return int(str(value))
        for nested in body.values():
            if isinstance(nested, dict | list) and (found := duration_of(nested)) != 6:
                return found
    elif isinstance(body, list):
        for item in body:
            if (found := duration_of(item)) != 6:
                return found
    return 6
