"""Faults the emulator injects, and how the providers survive them without paying twice."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from support import emulator_fixture

from hailuo_emulator import Emulator
from hailuo_pipe import providers
from hailuo_pipe.errors import (
    AuthenticationError,
    ContentRefused,
    RateLimited,
    RequestRejected,
    SubmitUncertain,
    TransientError,
)
from hailuo_pipe.providers.base import JobStatus, Provider, Reconciled, WireRequest
from hailuo_pipe.providers.http import RetryPolicy, request, retry_after
from hailuo_pipe.providers.minimax import error_for
from hailuo_pipe.storyboard.model import Scene

emulator = emulator_fixture.emulator
emulator_process = emulator_fixture.emulator_process

HOSTED = ("wavespeed", "gmicloud", "minimax", "runware", "apiframe", "fal", "replicate")
KEY = "0f8fad5b-d9cb-469f-a165-70867728950e"
FAST = RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.05, budget=10.0)


def make(name: str, emu: Emulator, key: str | None = None) -> Provider:
    provider = providers.get(name)(base_url=emu.url, api_key=key or emu.key)
    provider.retry_policy = FAST  # type: ignore[misc]  # instance override: fast tests
    return provider


def req(provider: Provider, **kw: Any) -> WireRequest:
    scene = Scene(
        id="s",
        prompt="A harbor at dawn [Pan left]",
        provider=provider.name,
        duration=6,
        resolution="768p",
        prompt_optimizer=False,
        **kw,
    )
    return provider.build_request(scene, {})


async def submit(
    provider: Provider, request: WireRequest, timeout: float = 5.0, key: str = KEY
) -> str:
    async with httpx.AsyncClient(timeout=timeout) as client:
        return await provider.submit(client, request, key)


async def finish(provider: Provider, job_id: str) -> JobStatus:
    async with httpx.AsyncClient(timeout=5) as client:
        for _ in range(300):
            status = await provider.poll(client, job_id)
            if status.terminal:
                return status
            await asyncio.sleep(0.03)
    raise AssertionError("job never finished")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- submits that may have created a job are never resent -------------------------------------


@pytest.mark.parametrize(
    "name", ["wavespeed", "gmicloud", "minimax", "apiframe", "fal", "replicate"]
)
def test_answer_dropped_after_the_job_exists_is_uncertain_and_not_resent(
    name: str, emulator: Emulator
) -> None:
    emulator.configure(drop={"on": "submit", "when": "after"})
    provider = make(name, emulator)
    with pytest.raises(SubmitUncertain) as caught:
        run(submit(provider, req(provider)))
    assert emulator.key not in str(caught.value)
    assert len(emulator.requests("submit")) == 1
    assert emulator.jobs()[name] == 1


def test_answer_dropped_before_the_job_is_still_uncertain_and_creates_nothing(
    emulator: Emulator,
) -> None:
    emulator.configure(drop={"on": "submit", "when": "before"})
    provider = make("wavespeed", emulator)
    with pytest.raises(SubmitUncertain):
        run(submit(provider, req(provider)))
    assert len(emulator.requests("submit")) == 1
    assert emulator.jobs()["wavespeed"] == 0


@pytest.mark.parametrize("status", [500, 502, 504])
def test_server_error_on_a_submit_is_uncertain(status: int, emulator: Emulator) -> None:
    emulator.configure(server_error={"on": "submit", "status": status})
    provider = make("gmicloud", emulator)
    with pytest.raises(SubmitUncertain):
        run(submit(provider, req(provider)))
    assert len(emulator.requests("submit")) == 1


def test_submit_that_hangs_past_the_client_timeout_is_uncertain(emulator: Emulator) -> None:
    emulator.configure(timeout={"on": "submit", "seconds": 2})
    provider = make("wavespeed", emulator)
    with pytest.raises(SubmitUncertain):
        run(submit(provider, req(provider), timeout=0.3))
    assert len(emulator.requests("submit")) == 1
    assert emulator.jobs()["wavespeed"] == 1


def test_malformed_json_answer_to_a_submit_is_uncertain(emulator: Emulator) -> None:
    emulator.configure(malformed_json={"on": "submit"})
    provider = make("apiframe", emulator)
    with pytest.raises(SubmitUncertain):
        run(submit(provider, req(provider)))
    assert emulator.jobs()["apiframe"] == 1


def test_connection_refused_submit_is_retried_since_nothing_was_sent() -> None:
    provider = providers.get("wavespeed")(base_url="http://127.0.0.1:9", api_key="k")
    provider.retry_policy = RetryPolicy(attempts=2, base_delay=0.01, budget=2)  # type: ignore[misc]
    with pytest.raises(TransientError, match="could not connect"):
        run(submit(provider, req(provider)))


# -- Runware's taskUUID makes a resend safe -------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        {"drop": {"on": "submit", "when": "after", "count": 1}},
        {"timeout": {"on": "submit", "seconds": 1, "count": 1}},
        {"server_error": {"on": "submit", "status": 502, "count": 1}},
        {"malformed_json": {"on": "submit", "count": 1}},
    ],
)
def test_runware_resends_the_same_task_uuid_and_still_pays_once(
    fault: dict[str, Any], emulator: Emulator
) -> None:
    emulator.configure(**fault)
    provider = make("runware", emulator)
    assert run(submit(provider, req(provider), timeout=0.5)) == KEY
    sent = emulator.requests("submit")
    assert len(sent) == 2
    assert {s["body"][0]["taskUUID"] for s in sent} == {KEY}
    assert emulator.jobs()["runware"] == 1
    assert run(finish(provider, KEY)).state == "succeeded"


def test_runware_reconcile_finds_the_job_by_its_task_uuid(emulator: Emulator) -> None:
    provider = make("runware", emulator)
    request = req(provider)

    async def go() -> tuple[Reconciled, Reconciled]:
        async with httpx.AsyncClient(timeout=5) as client:
            missing = await provider.reconcile(client, KEY, request)
            await provider.submit(client, request, KEY)
            return missing, await provider.reconcile(client, KEY, request)

    missing, found = run(go())
    assert (missing.job_id, missing.absent) == (None, False)  # not found is no proof of absence
    assert found.job_id == KEY


# -- rate limits and retries of idempotent calls ----------------------------------------------


def test_429_on_submit_is_retried_after_the_retry_after_wait(emulator: Emulator) -> None:
    emulator.configure(rate_limit={"on": "submit", "count": 2, "retry_after": 0.3})
    provider = make("wavespeed", emulator)
    started = time.monotonic()
    job_id = run(submit(provider, req(provider)))
    assert time.monotonic() - started >= 0.6
    assert job_id and len(emulator.requests("submit")) == 3
    assert emulator.jobs()["wavespeed"] == 1


def test_persistent_429_ends_as_rate_limited_with_the_wait(emulator: Emulator) -> None:
    emulator.configure(rate_limit={"on": "submit", "retry_after": 0.01})
    provider = make("apiframe", emulator)
    with pytest.raises(RateLimited) as caught:
        run(submit(provider, req(provider)))
    assert caught.value.retry_after == pytest.approx(0.01)
    assert emulator.jobs()["apiframe"] == 0


def test_minimax_rate_limit_code_in_a_200_answer_is_retried(emulator: Emulator) -> None:
    emulator.configure(rate_limit={"on": "submit", "count": 1})
    provider = make("minimax", emulator)
    assert run(submit(provider, req(provider)))
    assert len(emulator.requests("submit")) == 2
    assert emulator.jobs()["minimax"] == 1


@pytest.mark.parametrize("name", HOSTED)
def test_poll_faults_are_retried(name: str, emulator: Emulator) -> None:
    provider = make(name, emulator)
    job_id = run(submit(provider, req(provider)))
    emulator.configure(
        server_error={"on": "poll", "every": 3, "status": 503},
        malformed_json={"on": "poll", "every": 4},
        drop={"on": "poll", "every": 5},
    )
    assert run(finish(provider, job_id)).state == "succeeded"
    assert emulator.jobs()[name] == 1


def test_poll_that_keeps_failing_is_transient() -> None:
    async def go() -> None:
        transport = httpx.MockTransport(lambda r: httpx.Response(503, json={"message": "down"}))
        async with httpx.AsyncClient(transport=transport) as client:
            await request(client, "GET", "http://x/y", idempotent=True, policy=FAST, provider="p")

    with pytest.raises(TransientError, match="down"):
        run(go())


def test_poll_whose_connection_keeps_dropping_names_the_provider_once(
    emulator: Emulator,
) -> None:
    provider = make("wavespeed", emulator)
    job_id = run(submit(provider, req(provider)))
    emulator.configure(drop={"on": "poll"})
    with pytest.raises(TransientError) as err:
        run(finish(provider, job_id))
    assert str(err.value).startswith("WaveSpeedAI: connection lost"), err.value
    assert err.value.job_id == job_id


# -- jobs that end badly ----------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTED)
def test_failed_and_refused_jobs(name: str, emulator: Emulator) -> None:
    provider = make(name, emulator)
    emulator.configure(fail_jobs=1.0)
    failed = run(finish(provider, run(submit(provider, req(provider)))))
    assert (failed.state, failed.refused) == ("failed", False) and failed.error
    emulator.configure(fail_jobs=0.0, refuse_content=1.0)
    other_key = "7c9e6679-7425-40de-944b-e07fc1f90ae7"  # a new job, not a deduped resend
    refused = run(finish(provider, run(submit(provider, req(provider), key=other_key))))
    assert (refused.state, refused.refused) == ("failed", True)


def test_minimax_codes_map_onto_the_vocabulary() -> None:
    assert isinstance(error_for(1026, "sensitive"), ContentRefused)
    assert isinstance(error_for(1004, "login fail"), AuthenticationError)
    assert isinstance(error_for(1002, "rate limit"), RateLimited)
    assert isinstance(error_for(2013, "invalid params"), RequestRejected)
    assert isinstance(error_for(1008, "insufficient balance"), RequestRejected)
    assert isinstance(error_for(1033, "system error"), TransientError)


# -- rejected and unauthorised requests -------------------------------------------------------


@pytest.mark.parametrize("name", HOSTED)
def test_wrong_key_is_an_authentication_error_without_the_key(
    name: str, emulator: Emulator
) -> None:
    wrong = "sk-wrong-0123456789"
    provider = make(name, emulator, key=wrong)
    with pytest.raises(AuthenticationError) as caught:
        run(submit(provider, req(provider)))
    assert wrong not in str(caught.value)
    assert emulator.jobs()[name] == 0


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("wavespeed", {"duration_x": 1}),
        ("gmicloud", {"resolution": "720P"}),
        ("minimax", {"prompt_optimizer": "yes"}),
        ("runware", {"outputQuality": 100}),
        ("apiframe", {"resolution": "4k"}),
        ("fal", {"duration": 6}),  # a number: fal takes the string "6"
        ("replicate", {"resolution": "4k"}),
    ],
)
def test_invalid_request_is_rejected_with_the_providers_message(
    name: str, options: dict[str, Any], emulator: Emulator
) -> None:
    provider = make(name, emulator)
    with pytest.raises(RequestRejected) as caught:
        run(submit(provider, req(provider, options=options)))
    key = next(iter(options))
    assert key in str(caught.value) or str(options[key]) in str(caught.value)
    assert emulator.jobs()[name] == 0


def test_placeholder_images_are_rejected_by_the_emulator(emulator: Emulator) -> None:
    provider = make("minimax", emulator)
    scene = Scene("s", "p", "minimax", 6, "768p", False)
    request = provider.build_request(scene, {"image": "sha256:" + "0" * 64})
    with pytest.raises(RequestRejected, match="first_frame_image"):
        run(submit(provider, request))


def test_provider_text_is_scrubbed_of_the_key() -> None:
    secret = "sk-live-abcdef"

    async def go() -> None:
        body = {"message": f"key {secret} is not valid"}
        transport = httpx.MockTransport(lambda r: httpx.Response(401, json=body))
        async with httpx.AsyncClient(transport=transport) as client:
            await request(
                client, "GET", "http://x/", idempotent=True, secrets=(secret,), provider="p"
            )

    with pytest.raises(AuthenticationError) as caught:
        run(go())
    assert secret not in str(caught.value) and "is not valid" in str(caught.value)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after("3") == 3.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10)
    assert retry_after("soon") is None and retry_after(None) is None


# -- downloads --------------------------------------------------------------------------------


def test_truncated_and_expired_downloads(emulator: Emulator) -> None:
    provider = make("wavespeed", emulator)
    url = run(finish(provider, run(submit(provider, req(provider))))).output_url
    full = httpx.get(url).content
    emulator.configure(truncate_downloads={"count": 1})
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(url)
    assert httpx.get(url).content == full
    emulator.configure(expire_outputs=True)
    assert httpx.get(url).status_code == 403


def test_output_bytes_pads_the_served_clip(emulator: Emulator) -> None:
    emulator.configure(output_bytes=300_000)
    provider = make("runware", emulator)
    url = run(finish(provider, run(submit(provider, req(provider))))).output_url
    data = httpx.get(url).content
    assert len(data) >= 300_000 and data[4:8] == b"ftyp"


# -- load -------------------------------------------------------------------------------------


def test_a_hundred_and_twenty_concurrent_pollers(emulator: Emulator) -> None:
    emulator.configure(job_seconds=1.0)
    provider = make("wavespeed", emulator)
    request = req(provider)

    async def one(client: httpx.AsyncClient) -> str:
        job_id = await provider.submit(client, request, KEY)
        while not (status := await provider.poll(client, job_id)).terminal:
            await asyncio.sleep(0.2)
        return status.state

    async def go() -> list[str]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(timeout=10, limits=limits) as client:
            return await asyncio.gather(*(one(client) for _ in range(120)))

    assert run(go()) == ["succeeded"] * 120
    assert emulator.jobs()["wavespeed"] == 120


def test_warm_returns_once_the_clips_are_made_and_can_be_asked_again(emulator: Emulator) -> None:
    emulator.warm()  # benchmarks call this before their clocks start
    emulator.warm()  # the clips are made once: asking again finds them made
    assert emulator.requests() == []  # a control call, not a provider request
