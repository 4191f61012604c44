"""The hosted providers: pure request building, schemas, and a full job on the emulator."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from PIL import Image
from support import emulator_fixture

from hailuo_emulator import Emulator
from hailuo_pipe import providers
from hailuo_pipe.errors import ConfigError
from hailuo_pipe.providers.base import Provider
from hailuo_pipe.storyboard.model import Scene
from hailuo_pipe.storyboard.schemas import load_schema

# the shared emulator fixtures (conftest may also provide them)
emulator = emulator_fixture.emulator
emulator_process = emulator_fixture.emulator_process

HOSTED = ("wavespeed", "gmicloud", "minimax", "runware", "apiframe", "fal", "replicate")
KEY = "3b241101-e2bb-4255-8caf-4136c566a962"
URL = "https://example.com/first.png"
END_URL = "https://example.com/last.png"


def png_uri() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (640, 360), (10, 20, 30)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def scene(provider: str, **kw: Any) -> Scene:
    base: dict[str, Any] = dict(
        id="dawn",
        prompt="[Push in] Aerial dive over Ice Harbor at dawn",
        provider=provider,
        duration=6,
        resolution="768p",
        prompt_optimizer=False,
    )
    return Scene(**{**base, **kw})


def combos() -> list[tuple[str, str, int]]:
    return [
        (name, res, dur)
        for name in HOSTED
        for res, durs in providers.get(name).capabilities.durations.items()
        for dur in durs
    ]


# -- pure parts ---------------------------------------------------------------------------------


SCHEMAS = ["storyboard", *(f"providers/{p}" for p in providers.PROVIDER_NAMES)]


@pytest.mark.parametrize("name", SCHEMAS)
def test_shipped_schemas_are_valid_json_schema(name: str) -> None:
    Draft202012Validator.check_schema(load_schema(name))


@pytest.mark.parametrize(("name", "resolution", "duration"), combos())
def test_every_offered_combination_builds_a_valid_request(
    name: str, resolution: str, duration: int
) -> None:
    cls = providers.get(name)
    images = {"image": "sha256:" + "a" * 64}
    if cls.capabilities.end_image and resolution != "512p":
        images["end_image"] = "sha256:" + "b" * 64
    request = cls().build_request(scene(name, resolution=resolution, duration=duration), images)
    validator = Draft202012Validator(load_schema(f"providers/{name}"))
    assert list(validator.iter_errors(request.body)) == []
    assert request == cls().build_request(
        scene(name, resolution=resolution, duration=duration), images
    ), "build_request must be deterministic"
    assert cls().price(scene(name, resolution=resolution, duration=duration)) > 0


@pytest.mark.parametrize("name", HOSTED)
def test_schemas_reject_10_s_at_1080p_unknown_options_and_long_prompts(name: str) -> None:
    cls = providers.get(name)
    validator = Draft202012Validator(load_schema(f"providers/{name}"))
    bad = cls().build_request(scene(name, prompt="x" * 2001, options={"bogus": 1}), {})
    messages = [e.message for e in validator.iter_errors(bad.body)]
    assert any("bogus" in m for m in messages)
    assert any("2000" in m or "long" in m for m in messages)
    if name not in ("wavespeed", "fal"):  # their tier is the endpoint, vetted by capabilities
        ten = cls().build_request(scene(name, resolution="1080p", duration=10), {})
        assert list(validator.iter_errors(ten.body))


def test_wavespeed_request_picks_the_endpoint_from_the_resolution() -> None:
    cls = providers.get("wavespeed")
    std = cls().build_request(scene("wavespeed", duration=10), {"image": URL, "end_image": END_URL})
    pro = cls().build_request(scene("wavespeed", resolution="1080p"), {})
    assert std.path == "/api/v3/minimax/hailuo-02/standard"
    assert std.body == {
        "prompt": "[Push in] Aerial dive over Ice Harbor at dawn",
        "image": URL,
        "end_image": END_URL,
        "duration": 10,
        "enable_prompt_expansion": False,
    }
    assert pro.path == "/api/v3/minimax/hailuo-02/pro"
    assert cls().price(scene("wavespeed")) == Decimal("0.23")
    assert cls().price(scene("wavespeed", duration=10)) == Decimal("0.56")
    assert cls().price(scene("wavespeed", resolution="1080p")) == Decimal("0.48")


def test_gmicloud_wraps_the_payload_and_says_prompt_optimizer_explicitly() -> None:
    req = providers.get("gmicloud")().build_request(
        scene("gmicloud", resolution="512p", options={"fast_pretreatment": True}), {"image": URL}
    )
    assert req.body == {
        "model": "Minimax-Hailuo-02",
        "payload": {
            "prompt": "[Push in] Aerial dive over Ice Harbor at dawn",
            "duration": 6,
            "resolution": "512P",
            "prompt_optimizer": False,
            "first_frame_image": URL,
            "fast_pretreatment": True,
        },
    }


def test_gmicloud_and_minimax_schemas_need_a_first_frame_at_512p() -> None:
    for name in ("gmicloud", "minimax"):
        body = providers.get(name)().build_request(scene(name, resolution="512p"), {}).body
        errors = list(Draft202012Validator(load_schema(f"providers/{name}")).iter_errors(body))
        assert any(e.schema.get("x-message", "").startswith("512p needs") for e in errors)


def test_runware_task_has_a_placeholder_uuid_and_the_size_of_the_resolution() -> None:
    cls = providers.get("runware")
    req = cls().build_request(
        scene("runware", resolution="1080p", options={"outputQuality": 90}),
        {"image": URL, "end_image": END_URL},
    )
    assert req.path == "/v1"
    (task,) = req.body
    assert task["taskUUID"] == "00000000-0000-4000-8000-000000000000"
    assert (task["width"], task["height"], task["outputQuality"]) == (1920, 1080, 90)
    assert task["inputs"] == {
        "frameImages": [{"image": URL, "frame": "first"}, {"image": END_URL, "frame": "last"}]
    }
    assert cls().build_request(scene("runware"), {}).body[0]["width"] == 1366
    assert cls().price(scene("runware", resolution="1080p")) == Decimal("0.49")


def test_apiframe_puts_model_fields_in_hailuo_params_and_sends_only_urls() -> None:
    cls = providers.get("apiframe")
    req = cls().build_request(scene("apiframe", duration=10), {"image": URL})
    assert req.body == {
        "prompt": "[Push in] Aerial dive over Ice Harbor at dawn",
        "model": "hailuo-02",
        "hailuoParams": {
            "duration": 10,
            "resolution": "768p",
            "image": URL,
            "prompt_optimizer": False,
        },
    }
    assert cls.capabilities.local_images is False


@pytest.mark.parametrize(
    ("name", "given", "root"),
    [
        ("wavespeed", "http://h:1/api/v3/", "http://h:1"),
        ("gmicloud", "http://h:1/api/v1/ie/requestqueue/apikey", "http://h:1"),
        ("minimax", "http://h:1/v1", "http://h:1"),
        ("runware", "http://h:1/v1/", "http://h:1"),
        ("apiframe", "http://h:1/v2", "http://h:1"),
        ("apiframe", "http://h:1", "http://h:1"),
        ("replicate", "http://h:1/v1/", "http://h:1"),
        ("fal", "http://h:1/", "http://h:1"),
    ],
)
def test_base_url_with_or_without_the_version(name: str, given: str, root: str) -> None:
    assert providers.get(name)(base_url=given, api_key="k").base_url == root


@pytest.mark.parametrize("name", HOSTED)
def test_missing_key_names_the_variable(name: str) -> None:
    cls = providers.get(name)
    with pytest.raises(ConfigError, match=cls.key_variable()):
        cls.from_env({})
    configured = cls.from_env({cls.key_variable(): "sekrit", cls.url_variable(): "http://x/"})
    assert "sekrit" not in repr(configured)


# -- a whole job on the emulator ----------------------------------------------------------------


async def run_job(provider: Provider, request: Any) -> tuple[str, Any, bytes]:
    async with httpx.AsyncClient(timeout=5) as client:
        job_id = await provider.submit(client, request, KEY)
        for _ in range(200):
            status = await provider.poll(client, job_id)
            if status.terminal:
                break
            await asyncio.sleep(0.05)
        assert status.state == "succeeded", status
        clip = await client.get(status.output_url)
        clip.raise_for_status()
        return job_id, status, clip.content


EXPECTED = {
    "wavespeed": ("POST", "/api/v3/minimax/hailuo-02/standard", "authorization", "Bearer "),
    "gmicloud": ("POST", "/api/v1/ie/requestqueue/apikey/requests", "authorization", "Bearer "),
    "minimax": ("POST", "/v1/video_generation", "authorization", "Bearer "),
    "runware": ("POST", "/v1", "authorization", "Bearer "),
    "apiframe": ("POST", "/v2/videos/generate", "x-api-key", ""),
    "fal": ("POST", "/fal-ai/minimax/hailuo-02/standard/image-to-video", "authorization", "Key "),
    "replicate": ("POST", "/v1/models/minimax/hailuo-02/predictions", "authorization", "Bearer "),
}


@pytest.mark.parametrize("name", HOSTED)
def test_a_job_end_to_end_sends_exactly_the_built_request(name: str, emulator: Emulator) -> None:
    cls = providers.get(name)
    suffix = cls.version_suffixes[-1] if cls.version_suffixes else "/"
    provider = cls(base_url=emulator.url + suffix, api_key=emulator.key)
    image = URL if name == "apiframe" else png_uri()
    images = {"image": image}
    if cls.capabilities.end_image:
        images["end_image"] = END_URL
    request = provider.build_request(scene(name), images)
    job_id, status, clip = asyncio.run(run_job(provider, request))

    assert clip[4:8] == b"ftyp", "a real MP4"
    assert emulator.jobs()[name] == 1
    (sent,) = emulator.requests("submit")
    method, path, header, prefix = EXPECTED[name]
    headers = {k.lower(): v for k, v in sent["headers"].items()}
    assert (sent["method"], sent["path"]) == (method, path)
    assert headers[header] == prefix + emulator.key
    assert headers["content-type"] == "application/json"
    assert emulator.key not in json.dumps(sent["headers_redacted"])
    expected_body = request.body
    if name == "runware":
        expected_body = [{**request.body[0], "taskUUID": KEY}]
        assert job_id == KEY and status.cost is not None and status.seed is not None
    assert sent["body"] == expected_body
    if name == "apiframe":
        assert headers["idempotency-key"] == KEY
    polls = emulator.requests("poll")
    assert polls and all(
        {k.lower(): v for k, v in p["headers"].items()}[header] == prefix + emulator.key
        for p in polls
    )
    if name == "minimax":
        assert polls[-1]["path"] == "/v1/files/retrieve"
        assert polls[-2]["query"] == {"task_id": job_id}


# -- the poll schedule --------------------------------------------------------------------------


def simulate(schedule: Any, length: float) -> tuple[int, float]:
    """Polls made and detection delay for a job of `length` seconds."""
    from hailuo_pipe.render.polling import PollSchedule

    assert isinstance(schedule, PollSchedule)
    t, polls = 0.0, 0
    while True:
        polls += 1
        if t >= length:
            return polls, t - length
        t += schedule.next_delay(t)


def test_blind_schedule_starts_dense_and_spreads_out() -> None:
    from hailuo_pipe.render.polling import DurationEstimator, PollSchedule

    schedule = DurationEstimator().schedule("wavespeed")
    assert schedule.next_delay(0) == pytest.approx(0.1)
    assert schedule.next_delay(10_000) == 30
    for phase in (0.0, 0.3, 0.7, 0.99):
        # from a grid point on, each wait is a fifth of the time waited, whatever the phase
        polls, delay = simulate(PollSchedule(phase=phase), 20.0)
        assert 26 <= polls <= 28 and delay <= 0.2 * 20.0 + 0.1


def test_jobs_submitted_together_poll_at_different_moments() -> None:
    """20 sibling jobs of 2 s: in step, the first poll after their end comes up to 0.4 s late;
    spread over the grid by their phases, one of them looks within a few hundredths."""
    from hailuo_pipe.render.polling import DurationEstimator, PollSchedule

    def first_poll_after(schedules: list[PollSchedule], end: float) -> float:
        seen = []
        for schedule in schedules:
            t = 0.0
            while t < end:
                t += schedule.next_delay(t)
            seen.append(t)
        return min(seen) - end

    estimator = DurationEstimator()
    spread = [estimator.schedule("wavespeed") for _ in range(20)]
    in_step = [PollSchedule() for _ in range(20)]
    for end in (2.0, 2.1, 2.3):
        assert first_poll_after(spread, end) <= 0.05
    assert max(first_poll_after(in_step, end) for end in (2.0, 2.1, 2.3)) > 0.15


def test_learnt_schedule_sleeps_until_the_typical_end_then_checks_densely() -> None:
    from hailuo_pipe.render.polling import DurationEstimator

    estimator = DurationEstimator()
    for seconds in (20.1, 20.3, 19.9, 20.2):
        estimator.observe("runware", seconds)
    polls, delay = simulate(estimator.schedule("runware"), 20.0)
    assert polls <= 8 and delay <= 0.6
    for seconds in (2.05, 2.1, 2.02):
        estimator.observe("minimax", seconds)
    polls, delay = simulate(estimator.schedule("minimax"), 2.0)
    assert polls <= 6 and delay <= 0.2


def test_learnt_window_opens_one_step_before_the_early_jobs_ended() -> None:
    """Observed durations include their own detection delay, so the window opens a little
    before the early ones: one step, not more. A job like the others is then asked once while
    still running and seen done within a step (a 1 s job: one poll fewer than two steps early
    cost, which a thousand-scene render pays a thousand times)."""
    from hailuo_pipe.render.polling import DurationEstimator

    estimator = DurationEstimator()
    for seconds in (1.01, 1.02, 1.015, 1.03, 1.025, 1.012, 1.04, 1.02, 1.018, 1.022):
        estimator.observe("wavespeed", seconds)
    for length in (1.0, 1.01):
        polls, delay = simulate(estimator.schedule("wavespeed"), length)
        assert polls == 3  # (simulate counts one at submit) one early, one that sees it done
        assert delay <= 0.0126  # a step: 1.25 % of the typical 1.02 s


def test_a_blind_sleeper_polls_as_soon_as_a_sibling_that_ran_no_longer_ends() -> None:
    """Two jobs submitted together, blind: the first to be seen done wakes the other from its
    long blind wait, which then polls at once instead of up to a fifth of its age later."""
    import time

    from hailuo_pipe.providers.base import JobStatus
    from hailuo_pipe.render.polling import DurationEstimator, Poller

    ends, seen = 1.0, {}

    async def job(poller: Poller, name: str, started: float) -> None:
        async def poll() -> JobStatus:
            done = time.monotonic() - started >= ends
            return JobStatus(state="succeeded" if done else "running")

        await poller.until_done(
            poll, "p", started, just_sent=True, seen=lambda *_: None, overdue=lambda *_: None
        )
        seen[name] = time.monotonic() - started - ends

    async def both() -> None:
        poller = Poller(asyncio.Event(), DurationEstimator(min_delay=0.01))
        started = time.monotonic()
        try:
            await asyncio.gather(job(poller, "a", started), job(poller, "b", started))
        finally:
            poller.close()

    asyncio.run(both())
    # at 1 s a blind wait is up to 0.2 s; the later one polls once the first has been seen
    assert max(seen.values()) < min(seen.values()) + 0.05


def test_ctrl_c_wakes_a_sleeper_that_no_sibling_would() -> None:
    """Sleepers are woken by fewer ends now, but never less by a stop: a job whose schedule
    knows jobs take a minute, asleep until then, is interrupted at once when the render stops
    (else Ctrl-C would wait out the sleep)."""
    import time

    from hailuo_pipe.providers.base import JobStatus
    from hailuo_pipe.render.polling import DurationEstimator, Interrupted, Poller

    async def stopped() -> float:
        stop = asyncio.Event()
        estimator = DurationEstimator()
        estimator.observe("p", 60.0)
        poller = Poller(stop, estimator)

        async def poll() -> JobStatus:
            return JobStatus(state="running")

        asyncio.get_running_loop().call_later(0.2, stop.set)
        began = time.monotonic()
        try:
            with pytest.raises(Interrupted):
                await poller.until_done(
                    poll,
                    "p",
                    began,
                    just_sent=True,
                    seen=lambda *_: None,
                    overdue=lambda *_: RuntimeError(),
                )
        finally:
            poller.close()
        return time.monotonic() - began

    assert asyncio.run(stopped()) < 5


def test_an_end_that_teaches_nothing_new_wakes_no_sleeper() -> None:
    """Sleepers are woken when what they sleep by moved earlier, not at every end: in a wave of
    a hundred jobs, each end waking the ninety-nine others is ten thousand turns of the loop."""
    from hailuo_pipe.render.polling import DurationEstimator, Poller

    async def observe() -> None:
        poller = Poller(asyncio.Event(), DurationEstimator())
        loop = asyncio.get_running_loop()
        first = poller._learnt.setdefault("p", loop.create_future())
        poller._observe("p", 60.0)  # the first end: sleepers learn when jobs end
        assert first.done()
        for seconds in (61.0, 60.5, 59.8, 60.2):  # like it
            learnt = poller._learnt.setdefault("p", loop.create_future())
            poller._observe("p", seconds)
            assert not learnt.done()
        poller._observe("p", 40.0)
        poller._observe("p", 40.0)  # the early ones end a third sooner: reconsider
        assert learnt.done()

    asyncio.run(observe())


def test_learnt_schedule_is_denser_where_jobs_end_alike() -> None:
    from hailuo_pipe.render.polling import DurationEstimator

    estimator = DurationEstimator()
    for seconds in (120.0, 120.2, 120.1, 119.9):
        estimator.observe("alike", seconds)
    for seconds in (70.0, 95.0, 120.0, 150.0, 180.0):
        estimator.observe("spread", seconds)
    tight = estimator.schedule("alike")
    wide = estimator.schedule("spread")
    # inside their windows: 1.5 s between polls when jobs end alike, 3 s when they spread
    assert tight.next_delay(120.0) == pytest.approx(1.5, rel=0.01)
    assert wide.next_delay(120.0) == pytest.approx(3.0, rel=0.01)
    polls, delay = simulate(estimator.schedule("alike"), 120.0)
    assert polls <= 8 and delay <= 1.5  # four waits of at most 30 s, then the window
    # a job far later than all before it is still polled, ever more sparsely
    late = estimator.schedule("runware")
    assert 0.5 <= late.next_delay(60) <= 30
