"""One exception type per kind of failure, so callers can act on the kind.

Every error here is a user-facing condition: the CLI prints its message and exits 1 (2 for a
usage error), never a traceback. Messages must never contain an API key.

    HailuoPipeError
    ├── SpecError           the storyboard is wrong: every Problem, at file:line:col
    ├── UnknownName         a --var, scene id or file the storyboard does not have (usage)
    ├── ConfigError         the environment lacks something: a key, a base URL, a tool
    │   └── SettingError    an environment setting has a bad value (usage)
    ├── LockfileError       the lockfile is corrupt, hand-edited wrong, or of another version
    │   └── TransitionRefused   a write or an entry the table of transitions does not allow
    ├── AdoptRefused        --adopt for a scene that has no lost submission
    ├── PathRefused         a path leads out of the project, or is a special file
    ├── StalePlan           a saved plan no longer matches the spec, the lockfile or the options
    ├── LockHeldError       another render holds the spec's lock
    ├── BudgetExceeded      the plan costs more than --max-cost or budget:
    ├── MediaError          a clip or image cannot be read or written
    ├── DownloadError       a finished clip could not be downloaded or verified
    ├── CutNotReady         a scene of the cut has no finished clip
    ├── InitRefused         `init` would overwrite a file
    ├── CacheError          the shared cache cannot be reached or is inconsistent
    │   ├── LeaseHeld       another machine is generating this clip
    │   └── LeaseLost       our lease lapsed and was taken over
    └── ProviderError       a hosted API's answer, mapped onto a small vocabulary
        ├── AuthenticationError, RequestRejected, RateLimited, TransientError
        ├── SubmitUncertain     the submit's answer was lost: a job may exist
        ├── JobIdRefused        the answer's job id is not one we send anywhere
        ├── JobFailed
        │   └── ContentRefused  the provider's safety filter refused it
        └── OutputExpired       the job's clip is gone at the provider
"""

from __future__ import annotations

from dataclasses import dataclass


class HailuoPipeError(Exception):
    """Base of every error the program reports to a user without a traceback."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a storyboard, located in its file (line and column are 1-based)."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"

    def to_json(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "col": self.col, "message": self.message}


class SpecError(HailuoPipeError):
    """A storyboard is wrong; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.col, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


class UnknownName(HailuoPipeError):
    """A command-line argument names something the storyboard does not have (a usage error)."""


class ConfigError(HailuoPipeError):
    """The environment is missing something (an API key, a base URL, a tool)."""


class SettingError(ConfigError):
    """An environment variable holds a value the tool cannot use: a usage error (exit 2),
    refused before anything is sent."""


class LockfileError(HailuoPipeError):
    """The lockfile is corrupt, hand-edited into an invalid state, or of an unknown version."""


class TransitionRefused(LockfileError):
    """A lockfile write or a loaded entry that the table of transitions does not allow."""


class AdoptRefused(HailuoPipeError):
    """--adopt names a scene that is not waiting on a lost submission, or a malformed job id."""


class PathRefused(HailuoPipeError):
    """A path leads outside the project through a symlink, or names a special file."""

    def __init__(self, path: object, reason: str) -> None:
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class StalePlan(HailuoPipeError):
    """A saved plan that no longer describes what a render would do: nothing is sent."""


class LockHeldError(HailuoPipeError):
    """Another process is rendering the same storyboard right now."""


class BudgetExceeded(HailuoPipeError):
    """The new submissions of a run would cost more than --max-cost allows."""


class MediaError(HailuoPipeError):
    """A video or image could not be read or written."""


class DownloadError(HailuoPipeError):
    """A finished clip could not be downloaded or verified; the job is still the provider's."""


class InitRefused(HailuoPipeError):
    """`init` would overwrite a file that exists, or was given something not a storyboard."""


class CutNotReady(HailuoPipeError):
    """Some scene of the cut's sequence has no finished clip yet."""


# The shared result cache


class CacheError(HailuoPipeError):
    """The cache cannot be reached, refuses us, or holds something inconsistent."""


class LeaseHeld(CacheError):
    """Someone else is generating this scene right now (and their lease has not expired). Also
    how a lease is described for display, expired or not (`Cache.lease_of`, `Cache.leases`)."""

    def __init__(
        self,
        message: str,
        *,
        fingerprint: str,
        holder: str,
        since: float,
        expires: float,
        job_id: str | None = None,
        provider: str | None = None,
        key: str | None = None,
    ) -> None:
        self.fingerprint = fingerprint
        self.holder = holder
        self.since = since
        self.expires = expires
        self.job_id = job_id
        self.provider = provider
        self.key = key
        super().__init__(message)


class LeaseLost(CacheError):
    """Our lease expired and someone else took it over (or it was removed)."""


# Provider errors: the small vocabulary every adapter maps its API's errors onto.


class ProviderError(HailuoPipeError):
    """Base of errors reported by (or about) a hosted provider."""

    def __init__(self, message: str, *, provider: str = "", job_id: str | None = None) -> None:
        self.provider = provider
        self.job_id = job_id
        super().__init__(message)


class AuthenticationError(ProviderError):
    """The API key is missing, wrong or has no access."""


class RequestRejected(ProviderError):
    """The provider refused the request as invalid; its own message is kept."""


class RateLimited(ProviderError):
    """Too many requests; `retry_after` is the wait the provider asked for, in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class TransientError(ProviderError):
    """5xx, timeouts, dropped connections, malformed answers: worth retrying later."""


class SubmitUncertain(ProviderError):
    """A submit was sent but its answer was lost: a paid job may exist. Never resent blindly."""


class JobIdRefused(ProviderError):
    """A provider answered with a job id that is not one (a slash, a control character...):
    nothing is sent to a path built from it; the scene waits on --adopt."""


class JobFailed(ProviderError):
    """The provider ran the job and it failed."""


class ContentRefused(JobFailed):
    """The provider refused the prompt or an image as unsafe content."""


class OutputExpired(ProviderError):
    """The clip's download URL no longer works; the job id still identifies it at the provider."""
