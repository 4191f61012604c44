"""The one small interface every provider implements.

A provider turns a provider-neutral `Scene` into its own wire request (checked against its JSON
Schema in `schemas/providers/<name>.json`), submits it, polls it and reports the result in one
shared vocabulary. The executor never speaks a wire format itself.
"""

from __future__ import annotations

import base64
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from hailuo_pipe.errors import ConfigError, ProviderError, SubmitUncertain
from hailuo_pipe.redact import key_problem
from hailuo_pipe.storyboard.model import Scene

if TYPE_CHECKING:
    import httpx

State = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_STATES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
# Word stems of statuses that end a job. A status no adapter lists (MiniMax's CLI says `Failed`
# where its docs say `Fail`) must end the scene at once, not after the one-hour job timeout.
ENDING_STEMS: tuple[tuple[str, State], ...] = (
    ("cancel", "cancelled"),
    ("delet", "cancelled"),
    ("abort", "cancelled"),
    ("fail", "failed"),
    ("error", "failed"),
    ("timeout", "failed"),
    ("timedout", "failed"),
    ("expire", "failed"),
    ("reject", "failed"),
)


def state_of(status: object, known: Mapping[str, State], default: State = "running") -> State:
    """The shared state of a provider's status word: listed ones (any case), then any word that
    looks terminal, else `default`."""
    if not isinstance(status, str):  # a malformed answer is no verdict on the job
        return default
    word = status.strip().lower()
    for name, state in known.items():
        if name.lower() == word:
            return state
    letters = "".join(c for c in word if c.isalpha())
    for stem, state in ENDING_STEMS:
        if stem in letters:
            return state
    return default
REQUEST_TIMEOUT = 60.0  # seconds a render waits for any one answer (its HTTP client's timeout)
ABSENT: Any = object()  # a job id field missing from the answer (unlike one that is null)


def submitted_job_id(title: str, field: str, value: Any, *, numbers: bool = False) -> str:
    """The job id of a successful (2xx) submit answer. Anything else is SubmitUncertain, never
    a plain failure: the provider accepted the request and may have created a paid job, so the
    scene must wait for the user to find it, not be sent (and paid for) again."""
    if isinstance(value, str) and value.strip():
        return value
    if numbers and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if value is ABSENT:
        what = "missing"
    elif value is None:
        what = "null"
    elif isinstance(value, str):
        what = "an empty string"
    elif isinstance(value, bool):
        what = f"a boolean ({str(value).lower()})"
    elif isinstance(value, int | float):
        what = f"a number ({value!r:.40})"
    elif isinstance(value, dict):
        what = "an object"
    elif isinstance(value, list):
        what = "a list"
    else:
        what = f"a {type(value).__name__}"
    raise SubmitUncertain(
        f"{title} accepted the submission but the answer's {field} is {what}, not a job id "
        "(the submission may have created a job; it was not sent again)"
    )


@dataclass(frozen=True)
class Capabilities:
    """What a provider offers, for `validate` and `hailuo-pipe providers`."""

    # resolution -> durations offered at that resolution
    durations: Mapping[str, tuple[int, ...]]
    end_image: bool
    # False where the API takes only image URLs: local files and chained frames cannot be sent.
    local_images: bool
    # Resolutions that need a first frame (512p on every Hailuo 02 API).
    needs_first_frame: tuple[str, ...] = ("512p",)
    # Resolutions whose endpoint takes no last frame even where others do (WaveSpeed's 512p).
    no_end_image: tuple[str, ...] = ()

    @property
    def resolutions(self) -> tuple[str, ...]:
        return tuple(self.durations)


@dataclass(frozen=True)
class WireRequest:
    """A request exactly as it goes on the wire, relative to the provider's base URL."""

    method: str
    path: str
    body: Any


@dataclass(frozen=True)
class JobStatus:
    """A job's state in the shared vocabulary, with what the provider told about it."""

    state: State
    output_url: str | None = None
    cost: float | None = None
    seed: int | None = None
    error: str | None = None
    refused: bool = False  # the provider refused the content (NSFW / sensitive)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES


def wire_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def wire_str(value: Any) -> str:
    return value.lower() if isinstance(value, str) else ""


@dataclass(frozen=True)
class Reconciled:
    """What a provider's own records say of a submission whose answer was lost.

    Exactly one of three: `job_id` (the one job it created, to adopt), `absent` (there is
    certainly none: the provider's list of jobs was read whole, was authoritative, and no
    request can still be in flight), or neither (it cannot tell; `why` says why).
    """

    job_id: str | None = None
    absent: bool = False
    why: str = ""

    @classmethod
    def found(cls, job_id: str, why: str = "") -> Reconciled:
        return cls(job_id=job_id, why=why)

    @classmethod
    def none(cls, why: str) -> Reconciled:
        """Certainly no job: resubmitting cannot pay twice."""
        return cls(absent=True, why=why)

    @classmethod
    def unknown(cls, why: str = "") -> Reconciled:
        return cls(why=why)

    def adopted(self, title: str) -> str:
        """The line a render says when it adopts the job found."""
        return f"job {self.job_id}, found at {title}" + (f" ({self.why})" if self.why else "")

    def parked(self, scene_id: str, advice: str) -> str:
        """Why a scene stays parked: `advice` says how to settle it by hand."""
        if self.absent:  # proof enough, but not acted on by itself (a shared cache's lease)
            return (
                f"{scene_id}: {self.why}: rerun with --resubmit {scene_id} to submit it again "
                "(not done by itself with a shared cache, whose lease another machine may hold)"
            )
        return f"{scene_id}: {self.why}; {advice}" if self.why else f"{scene_id}: {advice}"


async def look_up(
    provider: Provider,
    client: httpx.AsyncClient,
    key: str,
    request: WireRequest,
    sent: str | None,
) -> Reconciled:
    """`provider.reconcile` for a submission the lockfile says was sent at `sent` (ISO 8601,
    UTC); an error while looking is no answer, only "cannot tell"."""
    try:
        return await provider.reconcile(client, key, request, epoch_of(sent))
    except ProviderError as err:
        return Reconciled.unknown(str(err))


UNKNOWN = Reconciled.unknown()
# A request held on the way (a slow proxy, a retrying load balancer) can still create its job
# until well after the client gave up on it, and a job list can lag behind a fresh job: a list
# read sooner than this after the submission was sent is never proof that there is no job.
SETTLE_SECONDS = 2 * REQUEST_TIMEOUT
# Clocks differ: a job created this long before the submission began (by our clock) may still
# be the submission's own. Wider would also take in an older identical job, which only ever
# makes a match ambiguous (so the scene is parked), never wrong.
CLOCK_SKEW = 30.0


def settled(since: float | None, now: float | None = None) -> bool:
    """Whether a submission sent at `since` can no longer create its job (see SETTLE_SECONDS)."""
    return since is not None and (time.time() if now is None else now) - since >= SETTLE_SECONDS


def epoch_of(value: Any) -> float | None:
    """Epoch seconds of a provider's timestamp: an ISO 8601 string (any precision, Z or an
    offset) or a number of seconds (milliseconds when that large); None when unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) / 1000 if value > 1e11 else float(value)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    # fromisoformat before 3.11 rejects fractions of other than 3 or 6 digits: cut to 6
    head, dot, rest = text.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:digits][:6].ljust(6, '0')}{rest[digits:]}"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


class Provider(ABC):
    name: ClassVar[str]
    title: ClassVar[str]
    env_prefix: ClassVar[str]  # "WAVESPEED" -> WAVESPEED_API_KEY, WAVESPEED_BASE_URL
    # The variables' names where a provider's own clients use others (fal.ai's FAL_KEY)
    api_key_variable: ClassVar[str] = ""
    base_url_variable: ClassVar[str] = ""
    default_base_url: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    # True when a submit whose answer was lost can be sent again without creating a second paid
    # job (the API dedupes on a client-chosen key). Otherwise such a submit is never repeated.
    idempotent_submit: ClassVar[bool] = False
    # Environment variables a provider reads besides its key and base URL (none is a secret).
    optional_variables: ClassVar[tuple[str, ...]] = ()
    # Local providers render on this machine and implement `render_local`, not submit/poll.
    local: ClassVar[bool] = False

    def __init__(self, base_url: str | None = None, api_key: str | None = None) -> None:
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self._api_key = api_key or ""

    def __repr__(self) -> str:  # never shows the key
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    @classmethod
    def key_variable(cls) -> str:
        return cls.api_key_variable or f"{cls.env_prefix}_API_KEY"

    @classmethod
    def url_variable(cls) -> str:
        return cls.base_url_variable or f"{cls.env_prefix}_BASE_URL"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Provider:
        """Configure from the environment; a missing key is an error naming the variable."""
        env = os.environ if environ is None else environ
        if cls.local:
            return cls()
        key = env.get(cls.key_variable(), "").strip()
        if not key:
            raise ConfigError(
                f"{cls.title} needs an API key: set {cls.key_variable()} in the environment"
            )
        # refused here, before anything is sent: such a key cannot go in a header, and the
        # message names the variable, never the key
        if problem := key_problem(key):
            raise ConfigError(
                f"{cls.key_variable()} {problem}; an API key is letters, digits and "
                "punctuation only: set it again, copying the key alone"
            )
        return cls(base_url=env.get(cls.url_variable()) or None, api_key=key)

    # -- pure parts: used by validate, plan and fingerprints, no network ------------------------

    # (resolution, duration) -> USD per clip; a combination not listed is charged the dearest
    prices: ClassVar[Mapping[tuple[str, int], Decimal]] = {}

    def price(self, scene: Scene) -> Decimal:
        """What one clip of this scene costs, in USD: the price of the request it is sent as."""
        placeholders = {
            key: "sha256:" + "0" * 64
            for key in ("image", "end_image")
            if getattr(scene, key) is not None
        }
        return self.price_of(self.build_request(scene, placeholders))

    def price_of(self, request: WireRequest) -> Decimal:
        """What the provider charges for exactly this request, read from the request itself so
        that what is planned (and checked against a budget) is what is paid."""
        listed = self.prices.get(self.priced_as(request) or ("", 0))
        return listed if listed is not None else max(self.prices.values(), default=Decimal(0))

    def priced_as(self, request: WireRequest) -> tuple[str, int] | None:
        """The (resolution, duration) the provider bills `request` at; None when it cannot tell
        (charged the dearest)."""
        return None

    @abstractmethod
    def build_request(self, scene: Scene, images: Mapping[str, str]) -> WireRequest:
        """Translate a scene into this API's request.

        `images` maps "image" / "end_image" to the string the API receives: a URL, a data URI,
        an upload reference, or (for validation and fingerprints) a placeholder `sha256:HEX`.
        """

    # Wire field name -> scene key, so a schema error on the request points at the YAML line.
    field_origins: ClassVar[Mapping[str, str]] = {}

    # -- network parts --------------------------------------------------------------------------

    async def encode_image(self, client: httpx.AsyncClient, data: bytes, mime: str) -> str:
        """Make a local image (file or extracted frame) sendable. Default: a data URI."""
        return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"

    async def submit(self, client: httpx.AsyncClient, request: WireRequest, key: str) -> str:
        """Send the request; return the provider's job id.

        `key` is a fresh UUID recorded in the lockfile before this call, usable as the API's
        idempotency key. Raise `SubmitUncertain` when the request may have reached the API but
        the answer was lost and the API cannot dedupe a resend.
        """
        raise NotImplementedError

    async def poll(self, client: httpx.AsyncClient, job_id: str) -> JobStatus:
        raise NotImplementedError

    async def reconcile(
        self,
        client: httpx.AsyncClient,
        key: str,
        request: WireRequest,
        since: float | None = None,
    ) -> Reconciled:
        """What became of a submission whose answer was lost: the job it created, certainly
        none, or cannot tell (the default: the API offers no way to look).

        `key` is the submission's key and `since` when it was sent (epoch seconds; None when
        unknown, which never proves a job absent)."""
        return UNKNOWN

    async def render_local(
        self, scene: Scene, images: Mapping[str, Path | str], dest: Path
    ) -> None:
        """Local providers only: write the scene's clip to `dest` on this machine.

        `images` maps "image" / "end_image" to a local file (a Path) or a URL (a str; a local
        provider never fetches it).
        """
        raise NotImplementedError

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"}

    def secrets(self) -> tuple[str, ...]:
        """Strings that must never be printed or written (used to scrub messages)."""
        return (self._api_key,) if self._api_key else ()
