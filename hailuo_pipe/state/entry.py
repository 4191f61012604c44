"""One scene's record in the lockfile: its state, its job, the files it produced.

Checked where it is read (`Entry.from_json`: a hand edit that points outside the spec's folder,
or a state without what it needs, is refused) and where it changes (`transitions`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from hailuo_pipe.errors import LockfileError
from hailuo_pipe.redact import printable
from hailuo_pipe.state import transitions

# submitting: key recorded, request about to be sent (its fate is unknown after a crash)
# submitted:  the provider answered with a job id; resume by polling it
# unknown:    the submit's answer was lost and the API cannot dedupe; never resent blindly
State = Literal["submitting", "submitted", "unknown", "done", "failed"]
STATES: tuple[str, ...] = ("submitting", "submitted", "unknown", "done", "failed")
# a submission whose job id we never recorded: a paid job may exist at the provider
PARKED: tuple[str, ...] = ("submitting", "unknown")
JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}")


def odd_job_id(job_id: object) -> str:
    """Why a job id from outside is refused, with the id escaped for a terminal."""
    return f"the job id {printable(repr(job_id))} is not a job id (letters, digits and . _ : -)"


@dataclass(frozen=True)
class FileRecord:
    """A file the render produced, relative to the spec's folder."""

    path: str
    sha256: str
    size: int
    pixels: str | None = None  # a frame's `media.pixel_digest`: what chained scenes hash

    def to_json(self) -> dict[str, Any]:
        data = {"path": self.path, "sha256": self.sha256, "size": self.size}
        if self.pixels is not None:
            data["pixels"] = self.pixels
        return data


@dataclass(frozen=True)
class Entry:
    fingerprint: str
    provider: str
    state: State
    key: str  # the idempotency key sent with the submit (a UUID we chose)
    request: Mapping[str, Any]  # the canonical request: images as content hashes or URLs
    job_id: str | None = None
    submitted_at: str | None = None
    finished_at: str | None = None
    output: FileRecord | None = None
    frames: Mapping[str, FileRecord] = field(default_factory=dict)  # "first"/"last" -> PNG
    cost: float | None = None
    # where `cost` came from: "provider" (the job's answer said so) or "price-list" (ours)
    cost_source: str | None = None
    seed: int | None = None
    error: str | None = None
    # how `fingerprint` was computed (fingerprint.SCHEME); lockfiles before it have none: 1
    scheme: int = 1

    def to_json(self) -> dict[str, Any]:
        """The entry as the lockfile and its journal hold it: fields in declaration order,
        empty ones left out; shared with the entry, not copied. Written by hand, not with
        `dataclasses.asdict`, which deep-copies the request: a tenth of a large render's event
        loop went there."""
        data = {
            "fingerprint": self.fingerprint,
            "provider": self.provider,
            "state": self.state,
            "key": self.key,
            "request": self.request,  # a list for some providers (Runware)
            "job_id": self.job_id,
            "submitted_at": self.submitted_at,
            "finished_at": self.finished_at,
            "output": self.output.to_json() if self.output is not None else None,
            "frames": {k: v.to_json() for k, v in self.frames.items()},
            "cost": self.cost,
            "cost_source": self.cost_source,
            "seed": self.seed,
            "error": self.error,
            "scheme": self.scheme,
        }
        return {k: v for k, v in data.items() if v is not None and v != {}}

    @classmethod
    def from_json(cls, scene_id: str, data: Any) -> Entry:
        where = f"scene {scene_id!r}"
        if not isinstance(data, dict):
            raise LockfileError(f"{where} is not an object")
        try:
            output = data.get("output")
            frames = data.get("frames") or {}
            if not isinstance(frames, dict) or (output and not isinstance(output, dict)):
                raise LockfileError(f"{where} has frames or an output that is not an object")
            entry = cls(
                fingerprint=_str(data, "fingerprint", where),
                provider=_str(data, "provider", where),
                state=data["state"],
                key=_str(data, "key", where),
                request=data.get("request") or {},
                job_id=data.get("job_id"),
                submitted_at=data.get("submitted_at"),
                finished_at=data.get("finished_at"),
                output=_file_record(output, f"{where} output") if output else None,
                frames={k: _file_record(v, f"{where} frame {k!r}") for k, v in frames.items()},
                cost=data.get("cost"),
                cost_source=data.get("cost_source"),
                seed=data.get("seed"),
                error=data.get("error"),
                scheme=data.get("scheme", 1),
            )
        except (KeyError, TypeError) as err:
            raise LockfileError(f"{where} is malformed ({err})") from None
        if entry.scheme not in (1, 2) or isinstance(entry.scheme, bool):
            raise LockfileError(
                f"{where} has fingerprint scheme {entry.scheme!r}, which this hailuo-pipe does "
                "not know: it was written by a newer version; upgrade to render it"
            )
        if entry.state not in STATES:
            raise LockfileError(f"{where} has an unknown state {entry.state!r}")
        transitions.check_entry(scene_id, entry)
        if entry.state == "submitted" and not (
            isinstance(entry.job_id, str) and JOB_ID.fullmatch(entry.job_id)
        ):
            # recorded by an earlier version from a provider's odd answer: never polled at a
            # path built from it, but waiting on --adopt like any job whose fate is unknown
            entry = replace(entry, state="unknown", error=odd_job_id(entry.job_id))
        return entry


_SEPARATORS = re.compile(r"[/\\]")


def _file_record(value: Any, where: str) -> FileRecord:
    """A recorded file, refused when a hand edit made it point outside the spec's folder:
    render reads these paths (chained frames are sent to providers) and trusts their hashes."""
    if not isinstance(value, dict):
        raise LockfileError(f"{where} is not an object")
    record = FileRecord(**value)
    path = record.path
    if (
        not isinstance(path, str)
        or not path
        or os.path.isabs(path)
        or ".." in _SEPARATORS.split(path)  # cheaper than PurePath, read 3,000 times a rerun
    ):
        raise LockfileError(f"{where} has path {path!r}, which is not inside the spec's folder")
    if not isinstance(record.sha256, str) or not record.sha256:
        raise LockfileError(f"{where} has no valid sha256")
    if not isinstance(record.size, int) or isinstance(record.size, bool) or record.size < 0:
        raise LockfileError(f"{where} has no valid size")
    if record.pixels is not None and not isinstance(record.pixels, str):
        raise LockfileError(f"{where} has no valid pixels digest")
    return record


def _str(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise LockfileError(f"{where} has no valid {key!r}")
    return value
