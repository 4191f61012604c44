"""Submit answers that say "accepted" but give no usable job id, and the advice for a scene
whose submission's fate is unknown: such a scene is parked, never paid for twice."""

from __future__ import annotations

from typing import Any

import pytest
from support.emulator_fixture import provider_env

from hailuo_emulator import Emulator
from hailuo_pipe.plan import make_plan
from hailuo_pipe.render import RenderOptions, render
from hailuo_pipe.state.lockfile import Lockfile
from hailuo_pipe.validate import load_storyboard

SPEC = """
version: 1
name: ids
scenes:
  - id: s1
    provider: {provider}
    prompt: "[Static shot] a lighthouse"
    image: https://example.com/lighthouse.jpg
"""

ABSENT = object()
# the job id the emulator answers with -> how the error names it
VARIANTS: list[tuple[Any, str]] = [
    (None, "is null"),
    (12345, "is a number (12345)"),
    ({"id": "j-1"}, "is an object"),
    ("", "is an empty string"),
    (ABSENT, "is missing"),
]
FIELDS = {
    "wavespeed": "data.id",
    "apiframe": "jobId",
    "gmicloud": "request_id",
    "fal": "request_id",
    "replicate": "id",
}


def _bad_id(value: Any) -> dict[str, Any]:
    return {"bad_job_id": {"count": 1} if value is ABSENT else {"count": 1, "value": value}}


@pytest.mark.parametrize("provider", ["wavespeed", "apiframe", "fal"])
@pytest.mark.parametrize(
    ("value", "named"), VARIANTS, ids=["null", "number", "object", "empty", "absent"]
)
def test_accepted_submit_without_a_usable_job_id_is_parked_unknown_and_not_paid_again(
    provider: str, value: Any, named: str, write_spec, emulator: Emulator
) -> None:
    spec = write_spec(SPEC.format(provider=provider))
    emulator.configure(**_bad_id(value))
    env = provider_env(emulator)
    first = render(load_storyboard(spec), RenderOptions(environ=env))
    (result,) = first.results
    assert result.outcome == "failed"
    assert f"the answer's {FIELDS[provider]} {named}, not a job id" in (result.error or "")
    assert "--adopt s1=JOB" in (result.error or "")
    assert emulator.faults().get("bad_job_id") == 1
    assert len(emulator.job_list()) == 1
    lock = Lockfile.load(spec.with_suffix(".lock"), "ids")
    assert lock.scenes["s1"].state == "unknown"
    assert lock.scenes["s1"].job_id is None

    # the next run refuses to send it blindly: still one paid job
    again = render(load_storyboard(spec), RenderOptions(environ=env))
    assert again.results[0].outcome == "failed"
    assert len(emulator.requests("submit")) == 1
    assert len(emulator.job_list()) == 1
    assert Lockfile.load(spec.with_suffix(".lock"), "ids").scenes["s1"].state == "unknown"


def test_minimax_number_task_id_is_a_job_id_but_a_boolean_is_not(
    write_spec, emulator: Emulator
) -> None:
    spec = write_spec(SPEC.format(provider="minimax"))
    emulator.configure(**_bad_id(True))
    result = render(load_storyboard(spec), RenderOptions(environ=provider_env(emulator)))
    assert "the answer's task_id is a boolean (true), not a job id" in (
        result.results[0].error or ""
    )
    assert Lockfile.load(spec.with_suffix(".lock"), "ids").scenes["s1"].state == "unknown"
    assert len(emulator.job_list()) == 1


def test_gmicloud_reconciles_an_accepted_submit_without_an_id_or_parks_it(
    write_spec, emulator: Emulator
) -> None:
    """GMI Cloud can find the job by its payload: either way nothing is paid twice."""
    spec = write_spec(SPEC.format(provider="gmicloud"))
    emulator.configure(**_bad_id(None))
    env = provider_env(emulator)
    render(load_storyboard(spec), RenderOptions(environ=env))
    render(load_storyboard(spec), RenderOptions(environ=env))
    state = Lockfile.load(spec.with_suffix(".lock"), "ids").scenes["s1"].state
    assert state in ("done", "unknown")
    assert len(emulator.job_list()) == 1


def test_blocked_scene_says_to_wait_out_the_request_timeout_before_looking(
    write_spec, emulator: Emulator
) -> None:
    spec = write_spec(SPEC.format(provider="wavespeed"))
    emulator.configure(drop=True)
    first = render(load_storyboard(spec), RenderOptions(environ=provider_env(emulator)))
    board = load_storyboard(spec)
    lock = Lockfile.load(spec.with_suffix(".lock"), "ids")
    entry = lock.scenes["s1"]
    assert entry.state == "unknown"
    advice = (
        f"a submission with key {entry.key} (sent {entry.submitted_at}) may have created a job "
        "at WaveSpeedAI; wait until 60 s (the request timeout) after it was sent, so no answer "
        "is still in flight, then look for it there and rerun with --adopt s1=JOB if you find "
        "it, or with --resubmit s1 to submit again if not"
    )
    error = first.results[0].error or ""
    assert error.startswith("s1: WaveSpeedAI: ") and error.endswith("; " + advice), error
    (step,) = make_plan(board, lock).steps
    assert step.action == "blocked"
    assert step.reason == advice
    again = render(board, RenderOptions(environ=provider_env(emulator)))
    assert again.results[0].error == f"s1: {advice}"


@pytest.mark.parametrize(("value", "named"), VARIANTS[:2], ids=["null", "number"])
def test_replicate_adopts_an_accepted_submit_without_an_id_from_its_prediction_list(
    value: Any, named: str, write_spec, emulator: Emulator
) -> None:
    """Replicate's list names the prediction by its input: adopted, said so, paid once."""
    spec = write_spec(SPEC.format(provider="replicate"))
    emulator.configure(**_bad_id(value))
    events: list[Any] = []
    result = render(
        load_storyboard(spec), RenderOptions(environ=provider_env(emulator), on_event=events.append)
    )
    assert [r.outcome for r in result.results] == ["rendered"], result
    [job] = emulator.job_list()
    assert Lockfile.load(spec.with_suffix(".lock"), "ids").scenes["s1"].job_id == job["id"]
    assert [e.detail for e in events if e.state == "adopted"] == [
        f"job {job['id']}, found at Replicate (by its input in Replicate's prediction list)"
    ]
    assert len(emulator.requests("submit")) == 1


def test_a_garbled_answer_to_a_resend_is_not_taken_for_a_refusal(
    write_spec: Any, emulator: Emulator
) -> None:
    """Runware's answers to a submit and to its resend both arrive as broken JSON (the second
    would have said "that taskUUID exists", in a 400): the scene must keep its key, not be
    marked failed and retried under a new one, which paid for a second job (found by the
    provider-fault soak)."""
    spec = write_spec(SPEC.format(provider="runware"))
    emulator.configure(malformed_json={"on": ["submit"], "count": 2})
    done = render(load_storyboard(spec), RenderOptions(environ=provider_env(emulator)))
    # resent under its key until an answer could be read: that task, and only it
    assert [r.outcome for r in done.results] == ["rendered"], done.results
    assert emulator.jobs()["total"] == 1
    assert len({r["body"][0]["taskUUID"] for r in emulator.requests("submit")}) == 1


def test_an_html_error_page_to_a_submit_is_still_a_refusal() -> None:
    """The rule above is for broken JSON only: a proxy's HTML 400 page is a refusal we can
    read, so the scene may be retried (no job was made)."""
    import asyncio

    import httpx

    from hailuo_pipe.errors import RequestRejected, SubmitUncertain
    from hailuo_pipe.providers.http import request

    def answer(body: bytes, kind: str) -> type[Exception]:
        async def go() -> None:
            transport = httpx.MockTransport(
                lambda r: httpx.Response(400, content=body, headers={"content-type": kind})
            )
            async with httpx.AsyncClient(transport=transport) as client:
                await request(client, "POST", "http://x/", idempotent=False, provider="p")

        with pytest.raises((RequestRejected, SubmitUncertain)) as caught:
            asyncio.run(go())
        return type(caught.value)

    assert answer(b"<html>400 Bad Request</html>", "text/html") is RequestRejected
    assert answer(b'{"error": {"code": "conflictTa', "application/json") is SubmitUncertain
