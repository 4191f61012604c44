"""The adapters against the providers as they really are (providers.md): each fact on the wire."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from typing import Any

import httpx
import pytest
from support import emulator_fixture
from support.emulator_fixture import provider_env

from hailuo_emulator import Emulator
from hailuo_pipe import providers
from hailuo_pipe.errors import (
    AuthenticationError,
    ContentRefused,
    RateLimited,
    RequestRejected,
    TransientError,
)
from hailuo_pipe.providers.http import Reply
from hailuo_pipe.render import RenderOptions, render
from hailuo_pipe.state.lockfile import Lockfile
from hailuo_pipe.validate import load_storyboard

emulator = emulator_fixture.emulator
emulator_process = emulator_fixture.emulator_process

KEY = "3b241101-e2bb-4255-8caf-4136c566a962"


def paid(emu: Emulator) -> dict[str, int]:
    return {k: v for k, v in emu.jobs().items() if v and k != "total"}


def opts(emu: Emulator, **kw: Any) -> RenderOptions:
    return RenderOptions(environ=provider_env(emu), concurrency=4, **kw)


def one_scene(provider: str, extra: str = "", image: str = "assets/a.png") -> str:
    return f"""
version: 1
name: facts
scenes:
  - id: only
    provider: {provider}
    prompt: "[Push in] harbor"
    image: {image}
{extra}"""


# -- Runware ------------------------------------------------------------------------------------


def test_runware_lost_submit_answer_ends_with_the_clip_and_one_paid_job(
    write_spec, emulator: Emulator
) -> None:
    spec = write_spec(one_scene("runware"))
    emulator.configure(drop={"on": "submit", "count": 1})
    result = render(load_storyboard(spec), opts(emulator))
    assert [r.outcome for r in result.results] == ["rendered"], result
    assert paid(emulator) == {"runware": 1}
    first, second = emulator.requests("submit")
    assert first["body"][0]["taskUUID"] == second["body"][0]["taskUUID"]
    entry = Lockfile.load(spec.with_suffix(".lock"), "facts").scenes["only"]
    assert (entry.state, entry.job_id) == ("done", first["body"][0]["taskUUID"])


def test_emulator_answers_a_resent_task_uuid_as_runware_does(emulator: Emulator) -> None:
    task = providers.get("runware")(base_url=emulator.url, api_key=emulator.key)
    from test_providers import scene

    body = task.with_key(task.build_request(scene("runware"), {}), KEY)  # type: ignore[attr-defined]
    headers = {"Authorization": f"Bearer {emulator.key}"}
    first = httpx.post(emulator.url + "/v1", json=body, headers=headers)
    again = httpx.post(emulator.url + "/v1", json=body, headers=headers)
    assert first.status_code == 200
    assert again.status_code == 400
    [error] = again.json()["errors"]
    assert (error["code"], error["taskUUID"]) == ("conflictTaskUUID", KEY)
    assert paid(emulator) == {"runware": 1}


def test_runware_conflict_for_another_task_or_other_errors_are_still_rejections() -> None:
    from hailuo_pipe.providers.runware import _check_submit

    other = {"errors": [{"code": "conflictTaskUUID", "message": "x", "taskUUID": "other"}]}
    with pytest.raises(RequestRejected):
        _check_submit(Reply(400, other, {}), KEY, ())
    bad = {"errors": [{"code": "invalidPositivePrompt", "message": "already too long sk-1"}]}
    with pytest.raises(RequestRejected, match=r"\*\*\*") as err:
        _check_submit(Reply(400, bad, {}), KEY, ("sk-1",))
    assert "sk-1" not in str(err.value)
    mine = {"errors": [{"code": "conflictTaskUUID", "taskUUID": KEY}]}
    _check_submit(Reply(400, mine, {}), KEY, ())  # our own earlier send: poll it


def test_runware_poll_error_naming_no_task_is_not_a_failure() -> None:
    from hailuo_pipe.providers.runware import _check_poll, status_of

    anonymous = {"errors": [{"code": "internalError", "message": "try again"}]}
    with pytest.raises(TransientError):
        _check_poll(Reply(400, anonymous, {}), KEY, ())
    assert status_of(anonymous, KEY).state != "failed"
    mine = {"errors": [{"code": "inferenceFailed", "message": "boom", "taskUUID": KEY}]}
    _check_poll(Reply(400, mine, {}), KEY, ())
    assert status_of(mine, KEY).state == "failed"


def test_runware_anonymous_poll_errors_are_retried_then_keep_the_job_for_a_rerun(
    write_spec, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hailuo_pipe.providers import runware
    from hailuo_pipe.providers.http import RetryPolicy

    fast = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02)
    monkeypatch.setattr(runware.RunwareProvider, "retry_policy", fast)
    spec = write_spec(one_scene("runware"))
    emulator.configure(anonymous_poll_errors=2)  # fewer than the attempts: absorbed
    result = render(load_storyboard(spec), opts(emulator))
    assert [r.outcome for r in result.results] == ["rendered"], result

    text = one_scene("runware").replace("harbor", "docks").replace("name: facts", "name: other")
    other = write_spec(text, "other.yaml")
    emulator.configure(anonymous_poll_errors=1000)
    result = render(load_storyboard(other), opts(emulator))
    assert [r.outcome for r in result.results] == ["failed"]
    entry = Lockfile.load(other.with_suffix(".lock"), "other").scenes["only"]
    assert entry.state == "submitted"  # not `failed`: the rerun waits for the paid job
    emulator.configure(anonymous_poll_errors=0)
    again = render(load_storyboard(other), opts(emulator))
    assert [r.outcome for r in again.results] == ["resumed"]
    assert paid(emulator) == {"runware": 2}


# -- statuses that end a job ----------------------------------------------------------------------


def test_minimax_failed_spelling_ends_the_scene_within_one_poll(
    write_spec, emulator: Emulator
) -> None:
    spec = write_spec(one_scene("minimax"))
    emulator.configure(fail_prompt="harbor", fail_status="Failed")
    result = render(load_storyboard(spec), opts(emulator))
    assert [r.outcome for r in result.results] == ["failed"]
    assert "unknown error (1000)" in (result.results[0].error or "")
    queries = [p for p in emulator.requests("poll") if p["path"] == "/v1/query/video_generation"]
    # job_seconds is 0.3: the first poll after the job ended is the last one
    assert len(queries) <= 4, len(queries)
    entry = Lockfile.load(spec.with_suffix(".lock"), "facts").scenes["only"]
    assert entry.state == "failed"


@pytest.mark.parametrize(
    "name, body",
    [
        ("wavespeed", {"status": "Timeout"}),
        ("wavespeed", {"status": "expired"}),
        ("gmicloud", {"status": "canceled"}),
        ("gmicloud", {"status": "ERROR"}),
        ("apiframe", {"status": "CANCELED_BY_USER"}),
        ("apiframe", {"status": "failure"}),
        ("runware", {"data": [{"taskUUID": KEY, "status": "failed"}]}),
        ("runware", {"data": [{"taskUUID": KEY, "status": "timedOut"}]}),
    ],
)
def test_unknown_statuses_that_look_terminal_end_the_job(name: str, body: dict[str, Any]) -> None:
    module = __import__(f"hailuo_pipe.providers.{name}", fromlist=["status_of"])
    status = module.status_of(body, KEY) if name == "runware" else module.status_of(body)
    assert status.terminal and status.state != "succeeded", status
    assert status.error


@pytest.mark.parametrize(
    "word", ["created", "dispatched", "queued", "processing", "Preparing", "IN_PROGRESS", "new"]
)
def test_statuses_that_do_not_look_terminal_keep_polling(word: str) -> None:
    from hailuo_pipe.providers import gmicloud

    assert not gmicloud.status_of({"status": word}).terminal


# -- MiniMax ------------------------------------------------------------------------------------


def _validate(spec: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hailuo_pipe", "validate", str(spec)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MINIMAX_API_KEY": "unused"},
    )


def test_minimax_last_frame_without_a_first_frame_is_refused_at_end_image(write_spec) -> None:
    spec = write_spec("""
version: 1
name: facts
scenes:
  - id: only
    provider: minimax
    prompt: "[Push in] harbor"
    end_image: assets/b.jpg
""")
    done = _validate(spec)
    assert done.returncode != 0
    assert "story.yaml:7:" in done.stdout + done.stderr, done
    assert "last frame only with a first frame" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_minimax_accepts_aigc_watermark_only_when_asked(write_spec) -> None:
    from test_providers import scene

    provider = providers.get("minimax")()
    plain = provider.build_request(scene("minimax"), {}).body
    assert "aigc_watermark" not in plain  # unchanged scenes keep their fingerprint
    spec = write_spec(one_scene("minimax", "    options:\n      aigc_watermark: true\n"))
    assert _validate(spec).returncode == 0


@pytest.mark.parametrize(
    "code, kind, words",
    [
        (1002, RateLimited, "rate limited"),
        (1004, AuthenticationError, "MINIMAX_API_KEY"),
        (2049, AuthenticationError, "invalid API key"),
        (1008, RequestRejected, "top up"),
        (1026, ContentRefused, "prompt was refused"),
        (1027, ContentRefused, "video was refused"),
        (1028, RequestRejected, "quota"),
        (1030, RequestRejected, "quota"),
        (2013, RequestRejected, "invalid parameters"),
        (2061, RequestRejected, "plan does not include"),
    ],
)
def test_minimax_error_codes_map_to_kinds_a_caller_can_act_on(
    code: int, kind: type, words: str
) -> None:
    from hailuo_pipe.providers.minimax import error_for

    err = error_for(code, "provider words")
    assert type(err) is kind
    assert words in str(err) and "provider words" in str(err) and str(code) in str(err)
    assert "\n" not in str(err)


# -- Apiframe -----------------------------------------------------------------------------------


def test_apiframe_records_the_credit_cost_the_job_reports(write_spec, emulator: Emulator) -> None:
    from hailuo_pipe.providers.apiframe import CREDIT_USD

    spec = write_spec(one_scene("apiframe", image="https://example.com/h.jpg"))
    result = render(load_storyboard(spec), opts(emulator))
    assert [r.outcome for r in result.results] == ["rendered"], result
    entry = Lockfile.load(spec.with_suffix(".lock"), "facts").scenes["only"]
    assert entry.cost == pytest.approx(float(5 * CREDIT_USD))  # 768p, 6 s: 5 credits


def test_apiframe_credit_cost_overrides_the_price_table() -> None:
    from hailuo_pipe.providers.apiframe import CREDIT_USD, status_of

    done = {"status": "COMPLETED", "result": {"videoUrl": "https://x/v.mp4"}, "creditCost": 8}
    assert status_of(done).cost == pytest.approx(float(8 * CREDIT_USD))
    assert status_of({**done, "creditCost": "8"}).cost is None
    assert status_of({**done, "creditCost": True}).cost is None


def test_apiframe_webhook_options_go_beside_hailuo_params(write_spec, emulator: Emulator) -> None:
    extra = (
        "    options:\n      webhookUrl: https://example.com/hook\n"
        "      webhookEvents: [completed, failed]\n"
    )
    spec = write_spec(one_scene("apiframe", extra, image="https://example.com/h.jpg"))
    result = render(load_storyboard(spec), opts(emulator))
    assert [r.outcome for r in result.results] == ["rendered"], result
    (sent,) = emulator.requests("submit")
    assert sent["body"]["webhookUrl"] == "https://example.com/hook"
    assert sent["body"]["webhookEvents"] == ["completed", "failed"]
    assert "webhookUrl" not in sent["body"]["hailuoParams"]
    wrong = "    options:\n      webhookEvents: [done]\n"
    bad = write_spec(one_scene("apiframe", wrong, image="https://example.com/h.jpg"), "b.yaml")
    done = _validate(bad)
    assert done.returncode != 0 and "webhookEvents" in done.stdout + done.stderr, done


# -- GMI Cloud ----------------------------------------------------------------------------------


def test_gmicloud_created_and_dispatched_are_queued_and_media_urls_are_read() -> None:
    from hailuo_pipe.providers.gmicloud import status_of

    assert status_of({"status": "created"}).state == "queued"
    assert status_of({"status": "dispatched"}).state == "queued"
    done = {"status": "success", "outcome": {"media_urls": [{"url": "https://x/v.mp4"}]}}
    assert status_of(done).output_url == "https://x/v.mp4"


def test_gmicloud_sends_the_organization_id_when_set(write_spec, emulator: Emulator) -> None:
    spec = write_spec(one_scene("gmicloud"))
    env = {**provider_env(emulator), "GMI_ORGANIZATION_ID": "org-42"}
    result = render(load_storyboard(spec), RenderOptions(environ=env))
    assert [r.outcome for r in result.results] == ["rendered"], result
    sent = emulator.requests("submit") + emulator.requests("poll")
    assert sent and all(
        {k.lower(): v for k, v in r["headers"].items()}.get("x-organization-id") == "org-42"
        for r in sent
    )


@pytest.mark.parametrize("org", ["org\r\nX-Evil: 1", "org\x00", "org 42", "orgé"])
def test_gmicloud_organization_id_with_control_characters_is_refused_before_sending(
    write_spec, emulator: Emulator, org: str
) -> None:
    from hailuo_pipe.errors import ConfigError

    spec = write_spec(one_scene("gmicloud"))
    env = {**provider_env(emulator), "GMI_ORGANIZATION_ID": org}
    with pytest.raises(ConfigError, match="GMI_ORGANIZATION_ID"):
        render(load_storyboard(spec), RenderOptions(environ=env))
    assert emulator.requests() == []


def test_runware_accepts_safety_only_when_asked(write_spec, emulator: Emulator) -> None:
    from test_providers import scene

    plain = providers.get("runware")().build_request(scene("runware"), {}).body[0]
    assert "safety" not in plain  # unchanged scenes keep their fingerprint
    extra = "    options:\n      safety: {checkContent: true, mode: fast}\n"
    spec = write_spec(one_scene("runware", extra))
    result = render(load_storyboard(spec), opts(emulator))
    assert [r.outcome for r in result.results] == ["rendered"], result
    (sent,) = emulator.requests("submit")
    assert sent["body"][0]["safety"] == {"checkContent": True, "mode": "fast"}
    bad = write_spec(one_scene("runware", "    options:\n      safety: {check: true}\n"), "b.yaml")
    done = _validate(bad)
    assert done.returncode != 0 and "unknown key 'check' in safety" in done.stderr, done


# -- WaveSpeed 512p -----------------------------------------------------------------------------


def test_wavespeed_512p_goes_to_the_fast_tier(write_spec, emulator: Emulator) -> None:
    spec = write_spec(one_scene("wavespeed", "    resolution: 512p\n    duration: 10\n"))
    result = render(load_storyboard(spec), opts(emulator))
    assert [r.outcome for r in result.results] == ["rendered"], result
    (sent,) = emulator.requests("submit")
    assert sent["path"] == "/api/v3/minimax/hailuo-02/fast"
    assert "image" in sent["body"] and "resolution" not in sent["body"]
    from test_providers import scene

    wavespeed = providers.get("wavespeed")()
    assert wavespeed.price(scene("wavespeed", resolution="512p", duration=6)) == Decimal("0.10")
    assert wavespeed.price(scene("wavespeed", resolution="512p", duration=10)) == Decimal("0.15")


def test_wavespeed_512p_needs_a_first_frame_and_takes_no_last(write_spec) -> None:
    no_image = write_spec("""
version: 1
name: facts
scenes:
  - id: only
    provider: wavespeed
    prompt: "[Push in] harbor"
    resolution: 512p
""")
    done = _validate(no_image)
    assert done.returncode != 0 and "512p needs a first frame" in done.stderr, done
    with_end = write_spec(
        one_scene("wavespeed", "    resolution: 512p\n    end_image: assets/b.jpg\n"), "e.yaml"
    )
    done = _validate(with_end)
    assert done.returncode != 0 and "no last frame at 512p" in done.stderr, done
    assert "e.yaml:9:" in done.stderr, done  # at the end_image line


def test_providers_command_lists_wavespeed_512p_with_its_prices() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hailuo_pipe", "providers", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done
    import json

    rows = {r["name"]: r for r in json.loads(done.stdout)}
    assert "GMI_ORGANIZATION_ID" in rows["gmicloud"]["env"]
    row = rows["wavespeed"]
    assert row["durations"]["512p"] == [6, 10]
    assert row["prices"]["512p/6s"] == pytest.approx(0.10)
    assert row["prices"]["512p/10s"] == pytest.approx(0.15)


def test_a_status_that_is_not_a_word_is_no_verdict() -> None:
    from hailuo_pipe.providers.base import state_of

    assert state_of({"error": "x"}, {}) == "running"
    assert state_of(["failed"], {}) == "running"
    assert state_of(None, {}) == "running"
