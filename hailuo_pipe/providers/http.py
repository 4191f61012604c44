"""One way to talk to a hosted API: JSON in and out, errors mapped, retries bounded.

Every provider call goes through `call`. Calls that cannot create anything (polls, look-ups, a
Runware submit resent with the same taskUUID) are retried with exponential backoff and full
jitter, bounded in attempts and in total time, honouring Retry-After. A submit that may create a
paid job is retried only when the API certainly did not accept it (429, a connection that never
opened); when its fate is unknown it raises `SubmitUncertain` and is never sent again.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from hailuo_pipe.errors import (
    AuthenticationError,
    JobIdRefused,
    ProviderError,
    RateLimited,
    RequestRejected,
    SubmitUncertain,
    TransientError,
)
from hailuo_pipe.providers.base import Provider
from hailuo_pipe.redact import shown
from hailuo_pipe.state.lockfile import JOB_ID, odd_job_id

# httpx is imported where a request is sent: a rerun with nothing to fetch never loads it
if TYPE_CHECKING:
    import httpx

MAX_MESSAGE = 500
MAX_ANSWER = 4 * 1024**2  # bytes of one API answer, decoded; real ones are a few KiB


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 8.0
    budget: float = 60.0  # seconds for all attempts together, waits included


DEFAULT_POLICY = RetryPolicy()


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    headers: Mapping[str, str]


def scrub(text: str, secrets: Iterable[str]) -> str:
    """The text with every secret masked, control characters escaped and its length bounded."""
    text = shown(text, secrets)
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def segment(job_id: str) -> str:
    """A job id as one URL path segment: a slash, a dot-dot or a CR LF cannot leave it."""
    return quote(job_id, safe=":")


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def provider_message(body: Any) -> str:
    """The provider's own words from an error body, whatever its envelope looks like."""
    if isinstance(body, str):
        return body.strip()
    if isinstance(body, list) and body:
        return provider_message(body[0])
    if not isinstance(body, dict):
        return ""
    for key in ("errors", "error", "base_resp", "detail", "message", "msg", "status_msg"):
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, dict | list) and value:
            found = provider_message(value)
            if found:
                return found
    return ""


def backoff(attempt: int, policy: RetryPolicy, rng: random.Random | None = None) -> float:
    """Full jitter: uniform in [0, min(max, base * 2**attempt)]."""
    ceiling = min(policy.max_delay, policy.base_delay * 2**attempt)
    return (rng or random).uniform(0, ceiling)


class HostedProvider(Provider):
    """A provider reached over HTTP; base URLs are accepted with or without the API version."""

    # Version segments a user may include in the base URL; request paths carry them already.
    version_suffixes: ClassVar[tuple[str, ...]] = ()
    retry_policy: ClassVar[RetryPolicy] = DEFAULT_POLICY

    def __init__(self, base_url: str | None = None, api_key: str | None = None) -> None:
        super().__init__(base_url=base_url, api_key=api_key)
        self.base_url = normalise_base(self.base_url, self.version_suffixes)

    def url(self, path: str) -> str:
        # an absolute URL is one an answer gave (fal's status_url), its host checked by the
        # adapter that follows it
        return path if path.startswith(("http://", "https://")) else self.base_url + path

    async def call(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool,
        check: Callable[[Reply], None] | None = None,
        job_id: str | None = None,
        accept: frozenset[int] = frozenset(),
    ) -> Reply:
        if job_id is not None and not JOB_ID.fullmatch(job_id):
            # never an authenticated request to a path a provider's odd answer chose
            raise JobIdRefused(
                f"{self.title}: {odd_job_id(job_id)}; nothing was sent for it",
                provider=self.name,
                job_id=job_id,
            )
        return await request(
            client,
            method,
            self.url(path),
            body=body,
            params=params,
            headers={**self.auth_headers(), **(headers or {})},
            idempotent=idempotent,
            check=check,
            provider=self.name,
            title=self.title,
            secrets=self.secrets(),
            policy=self.retry_policy,
            job_id=job_id,
            accept=accept,
        )


def normalise_base(base: str, suffixes: Iterable[str]) -> str:
    base = base.rstrip("/")
    for suffix in sorted(suffixes, key=len, reverse=True):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


async def request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    body: Any = None,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    idempotent: bool,
    check: Callable[[Reply], None] | None = None,
    provider: str = "",
    title: str = "",
    secrets: Iterable[str] = (),
    policy: RetryPolicy = DEFAULT_POLICY,
    job_id: str | None = None,
    accept: frozenset[int] = frozenset(),
) -> Reply:
    """Send one JSON request, retrying what is safe to retry; errors in the shared vocabulary.

    `check` sees every 2xx reply and may raise a ProviderError for errors an API reports inside
    a successful HTTP answer (MiniMax's base_resp); a RateLimited or TransientError it raises is
    retried like an HTTP one. Statuses in `accept` are returned for the caller to read (Runware
    reports a failed task inside a 400 answer).
    """
    ctx = _Context(provider, title or provider, tuple(s for s in secrets if s), job_id)
    deadline = time.monotonic() + policy.budget
    attempt = 0
    while True:
        try:
            reply = await _once(client, method, url, body, params, headers, ctx, accept)
            if check is not None and (200 <= reply.status < 300 or reply.status in accept):
                check(reply)
            return reply
        except (RateLimited, TransientError, _Unsent, _Unknown) as err:
            retryable = idempotent or isinstance(err, RateLimited | _Unsent)
            if not retryable:
                raise ctx.uncertain(err) from None
            wait = _wait_for(err, attempt, policy)
            attempt += 1
            if attempt >= policy.attempts or time.monotonic() + wait > deadline:
                raise ctx.final(err) from None
            await asyncio.sleep(wait)


@dataclass(frozen=True)
class _Context:
    provider: str
    title: str
    secrets: tuple[str, ...]
    job_id: str | None

    def text(self, message: str) -> str:
        return scrub(f"{self.title}: {message}", self.secrets)

    def error(self, cls: type[ProviderError], message: str, **kw: Any) -> ProviderError:
        return cls(self.text(message), provider=self.provider, job_id=self.job_id, **kw)

    def uncertain(self, err: Exception) -> SubmitUncertain:
        reason = str(err) if isinstance(err, ProviderError) else _describe(err)
        return SubmitUncertain(
            scrub(
                f"{reason} (the submission may have created a job; it was not sent again)",
                self.secrets,
            ),
            provider=self.provider,
        )

    def final(self, err: Exception) -> ProviderError:
        if isinstance(err, ProviderError):
            return err
        # _Unsent and _Unknown carry text already prefixed with the provider's title
        return TransientError(
            scrub(_describe(err), self.secrets), provider=self.provider, job_id=self.job_id
        )


class _Unsent(Exception):
    """The request never left this machine (connection refused, connect timeout)."""


class _Unknown(Exception):
    """The request may have reached the API but no usable answer came back."""


def _describe(err: Exception) -> str:
    if isinstance(err, _Unsent | _Unknown) and err.args:
        return str(err.args[0])
    return str(err)


def _wait_for(err: Exception, attempt: int, policy: RetryPolicy) -> float:
    if isinstance(err, RateLimited) and err.retry_after is not None:
        return err.retry_after
    return backoff(attempt, policy)


async def _once(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    body: Any,
    params: Mapping[str, str] | None,
    headers: Mapping[str, str] | None,
    ctx: _Context,
    accept: frozenset[int],
) -> Reply:
    import httpx

    # raised before a single byte of the request left this machine: always safe to resend
    never_sent = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
    try:
        sent = client.build_request(
            method,
            url,
            json=body,
            params=dict(params) if params else None,
            headers=dict(headers) if headers else None,
        )
        response = await client.send(sent, stream=True)
    except never_sent as err:
        raise _Unsent(ctx.text(f"could not connect ({type(err).__name__})")) from None
    except httpx.TimeoutException as err:
        raise _Unknown(ctx.text(f"no answer in time ({type(err).__name__})")) from None
    except httpx.TransportError as err:
        raise _Unknown(ctx.text(f"connection lost ({type(err).__name__})")) from None
    try:
        data = await _read_capped(response, ctx)
    except httpx.TimeoutException as err:
        raise _Unknown(ctx.text(f"no answer in time ({type(err).__name__})")) from None
    except (httpx.TransportError, httpx.DecodingError) as err:
        raise _Unknown(ctx.text(f"connection lost ({type(err).__name__})")) from None
    finally:
        await response.aclose()
    return _reply(response, data, ctx, accept)


async def _read_capped(response: httpx.Response, ctx: _Context) -> bytes:
    """The answer's (decoded) bytes, refused past MAX_ANSWER: no API answer is near it, and a
    hostile one must not fill memory."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_ANSWER:
        raise _Unknown(ctx.text(f"an answer larger than {MAX_ANSWER:,} bytes; refusing it"))
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_ANSWER:
            raise _Unknown(ctx.text(f"an answer larger than {MAX_ANSWER:,} bytes; refusing it"))
        chunks.append(chunk)
    return b"".join(chunks)


def _reply(
    response: httpx.Response, data: bytes, ctx: _Context, accept: frozenset[int]
) -> Reply:
    status = response.status_code
    try:
        body: Any = json.loads(data) if data else None
        parsed = True
    except (json.JSONDecodeError, UnicodeDecodeError):
        body, parsed = data.decode(response.encoding or "utf-8", "replace"), False
    except RecursionError:
        # JSON nested past Python's recursion limit: no API answers like that
        raise _Unknown(ctx.text(f"an answer nested too deep to read (HTTP {status})")) from None
    if 200 <= status < 300 or (status in accept and parsed and body is not None):
        if not parsed:
            raise _Unknown(ctx.text(f"malformed JSON in a {status} answer"))
        return Reply(status, body, response.headers)
    if not parsed and _meant_as_json(response, data):
        # JSON cut short or garbled on the way: whatever it said (a refusal, or "that task
        # already exists" to a resend) is lost with it, so it proves no job is missing
        raise _Unknown(ctx.text(f"malformed JSON in a {status} answer"))
    message = provider_message(body) or response.reason_phrase or f"HTTP {status}"
    if status == 429:
        wait = retry_after(response.headers.get("retry-after"))
        raise ctx.error(RateLimited, f"rate limited: {message}", retry_after=wait)
    if status in (401, 403):
        raise ctx.error(AuthenticationError, f"authentication failed (HTTP {status}): {message}")
    if 400 <= status < 500:
        raise ctx.error(RequestRejected, f"request rejected (HTTP {status}): {message}")
    raise ctx.error(TransientError, f"server error (HTTP {status}): {message}")


def _meant_as_json(response: httpx.Response, data: bytes) -> bool:
    """An answer sent as JSON (by its type, or by how it starts): an HTML or text error page
    from a proxy is a refusal we can read; broken JSON is an answer we could not."""
    kind = response.headers.get("content-type", "").lower()
    return "json" in kind or data.lstrip()[:1] in (b"{", b"[")
