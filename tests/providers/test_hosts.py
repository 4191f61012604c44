"""fal.ai and Replicate on the wire (providers.md), and a lost submission reconciled from
Replicate's prediction list: adopted when the list names it, submitted anew only when the list,
read whole, proves there is none, parked in every other case."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
from support import emulator_fixture
from support.emulator_fixture import provider_env

from hailuo_emulator import Emulator
from hailuo_pipe import providers
from hailuo_pipe.errors import ConfigError, OutputExpired, RequestRejected
from hailuo_pipe.providers import replicate
from hailuo_pipe.providers.base import SETTLE_SECONDS, Reconciled
from hailuo_pipe.render import Event, RenderOptions, render
from hailuo_pipe.state.lockfile import Lockfile, iso
from hailuo_pipe.storyboard.model import Scene
from hailuo_pipe.validate import load_storyboard

emulator = emulator_fixture.emulator
emulator_process = emulator_fixture.emulator_process


def paid(emu: Emulator) -> dict[str, int]:
    return {k: v for k, v in emu.jobs().items() if v and k != "total"}


def one_scene(provider: str, extra: str = "", image: str = "assets/a.png", sid: str = "s") -> str:
    return f"""
version: 1
name: hosts
scenes:
  - id: {sid}
    provider: {provider}
    prompt: "[Push in] harbor at dawn"
    image: {image}
{extra}"""


def opts(emu: Emulator, events: list[Event] | None = None, **kw: Any) -> RenderOptions:
    sink = events.append if events is not None else (lambda e: None)
    kw.setdefault("concurrency", 4)
    return RenderOptions(environ=provider_env(emu), on_event=sink, **kw)


def entry(spec: Any, sid: str = "s") -> Any:
    return Lockfile.load(spec.with_suffix(".lock"), "hosts").scenes[sid]


def scene(provider: str, **kw: Any) -> Scene:
    base: dict[str, Any] = dict(
        id="s", prompt="[Static shot] a lighthouse", provider=provider, duration=6,
        resolution="768p", prompt_optimizer=False,
    )  # fmt: skip
    return Scene(**{**base, **kw})


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key", "url"),
    [
        ("fal", "FAL_KEY", "FAL_BASE_URL"),
        ("replicate", "REPLICATE_API_TOKEN", "REPLICATE_BASE_URL"),
    ],
)
def test_the_hosts_read_the_variables_their_own_clients_read(name: str, key: str, url: str) -> None:
    cls = providers.get(name)
    assert (cls.key_variable(), cls.url_variable()) == (key, url)
    with pytest.raises(ConfigError, match=key):
        cls.from_env({f"{name.upper()}_API_KEY": "k"})  # the prefix convention is not read
    configured = cls.from_env({key: "sk-1", url: "http://127.0.0.1:1/"})
    assert configured.base_url == "http://127.0.0.1:1"
    scheme = "Key" if name == "fal" else "Bearer"
    assert configured.auth_headers() == {"Authorization": f"{scheme} sk-1"}


def test_providers_command_lists_the_hosts_with_their_variables() -> None:
    from click.testing import CliRunner

    from hailuo_pipe import cli

    out = CliRunner().invoke(cli.main, ["providers", "--json"])
    rows = {r["name"]: r for r in json.loads(out.output)}
    assert rows["fal"]["env"] == ["FAL_KEY", "FAL_BASE_URL"]
    assert rows["replicate"]["env"] == ["REPLICATE_API_TOKEN", "REPLICATE_BASE_URL"]
    assert rows["fal"]["prices"] == {
        "512p/6s": 0.11, "512p/10s": 0.17, "768p/6s": 0.27, "768p/10s": 0.45, "1080p/6s": 0.48,
    }  # fmt: skip
    text = CliRunner().invoke(cli.main, ["providers"]).output
    assert "fal  (fal.ai)" in text and "replicate  (Replicate)" in text


# -- fal.ai --------------------------------------------------------------------------------------


def test_fal_picks_its_endpoint_from_the_resolution_and_the_first_frame() -> None:
    fal = providers.get("fal")()
    image = {"image": "https://example.com/a.png"}
    cases = [
        (scene("fal"), {}, "/fal-ai/minimax/hailuo-02/standard/text-to-video"),
        (scene("fal"), image, "/fal-ai/minimax/hailuo-02/standard/image-to-video"),
        (scene("fal", resolution="1080p"), {}, "/fal-ai/minimax/hailuo-02/pro/text-to-video"),
        (scene("fal", resolution="1080p"), image, "/fal-ai/minimax/hailuo-02/pro/image-to-video"),
        (scene("fal", resolution="512p"), image, "/fal-ai/minimax/hailuo-02-fast/image-to-video"),
    ]
    for s, images, path in cases:
        assert fal.build_request(s, images).path == path
    ten = fal.build_request(scene("fal", duration=10), image).body
    assert ten["duration"] == "10" and ten["resolution"] == "768P"  # a string on fal
    pro = fal.build_request(scene("fal", resolution="1080p"), image).body
    assert "duration" not in pro and "resolution" not in pro
    assert fal.price(scene("fal", duration=10)) == fal.prices[("768p", 10)]


def test_fal_follows_the_urls_its_submit_answered_under_the_app(
    write_spec, emulator: Emulator
) -> None:
    spec = write_spec(one_scene("fal"))
    result = render(load_storyboard(spec), opts(emulator))
    assert [r.outcome for r in result.results] == ["rendered"], result
    (sent,) = emulator.requests("submit")
    assert sent["path"] == "/fal-ai/minimax/hailuo-02/standard/image-to-video"
    assert sent["body"]["image_url"].startswith("data:image/png;base64,")
    job = entry(spec).job_id
    polls = {p["path"] for p in emulator.requests("poll")}
    # the status and the result live under the app, not under the endpoint's path
    assert polls == {f"/fal-ai/minimax/requests/{job}/status", f"/fal-ai/minimax/requests/{job}"}


def test_fal_job_resumed_by_another_process_is_polled_under_the_app(emulator: Emulator) -> None:
    fal = providers.get("fal")(base_url=emulator.url, api_key=emulator.key)
    request = fal.build_request(scene("fal"), {})

    async def go() -> str:
        async with httpx.AsyncClient(timeout=5) as client:
            job_id = await fal.submit(client, request, "k")
            later = providers.get("fal")(base_url=emulator.url, api_key=emulator.key)
            while not (status := await later.poll(client, job_id)).terminal:
                await asyncio.sleep(0.05)
            return status.state

    assert asyncio.run(go()) == "succeeded"


def test_fal_never_follows_an_answer_to_another_host_and_the_job_is_adoptable(
    write_spec, emulator: Emulator
) -> None:
    spec = write_spec(one_scene("fal"))
    emulator.configure(foreign_urls="http://127.0.0.2:9")  # where no emulator listens
    first = render(load_storyboard(spec), opts(emulator))
    (result,) = first.results
    assert result.outcome == "failed"
    [job] = emulator.job_list()
    error = result.error or ""
    assert "points to http://127.0.0.2:9" in error and "refusing to follow it" in error
    assert f"request_id {job['id']}" in error and "--adopt s=JOB" in error
    assert entry(spec).state == "unknown"
    assert emulator.requests("poll") == []
    emulator.configure(foreign_urls=None)
    adopted = render(load_storyboard(spec), opts(emulator, adopt={"s": job["id"]}))
    assert [r.outcome for r in adopted.results] == ["resumed"], adopted
    assert paid(emulator) == {"fal": 1}


def test_fal_status_answer_pointing_elsewhere_is_refused_not_followed(
    emulator: Emulator,
) -> None:
    fal = providers.get("fal")(base_url=emulator.url, api_key=emulator.key)
    request = fal.build_request(scene("fal"), {})

    async def go() -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            job_id = await fal.submit(client, request, "k")
            await asyncio.sleep(0.5)  # done: its status carries a response_url
            emulator.configure(foreign_urls="https://evil.invalid")
            await fal.poll(client, job_id)

    with pytest.raises(RequestRejected, match=r"points to https://evil\.invalid"):
        asyncio.run(go())
    assert not [p for p in emulator.requests("poll") if not p["path"].endswith("/status")]


def test_fal_failures_and_refusals_are_read_from_status_and_result(emulator: Emulator) -> None:
    fal = providers.get("fal")(base_url=emulator.url, api_key=emulator.key)

    async def finish(prompt: str) -> Any:
        async with httpx.AsyncClient(timeout=5) as client:
            request = fal.build_request(scene("fal", prompt=prompt), {})
            job_id = await fal.submit(client, request, "k")
            while not (status := await fal.poll(client, job_id)).terminal:
                await asyncio.sleep(0.05)
            return status

    emulator.configure(fail_jobs=1.0)
    failed = asyncio.run(finish("one"))
    assert (failed.state, failed.refused) == ("failed", False)
    assert "runtime_error" in (failed.error or "")
    emulator.configure(fail_jobs=0.0, refuse_content=1.0)
    refused = asyncio.run(finish("two"))
    assert (refused.state, refused.refused) == ("failed", True)
    assert "content_policy_violation" in (refused.error or "")


# -- Replicate: predictions ----------------------------------------------------------------------


def test_replicate_always_says_the_resolution_since_its_default_is_1080p(
    write_spec, emulator: Emulator
) -> None:
    spec = write_spec(one_scene("replicate", "    end_image: assets/b.jpg\n"))
    result = render(load_storyboard(spec), opts(emulator))
    assert [r.outcome for r in result.results] == ["rendered"], result
    (sent,) = emulator.requests("submit")
    assert sent["path"] == "/v1/models/minimax/hailuo-02/predictions"
    data = sent["body"]["input"]
    assert (data["resolution"], data["duration"], data["prompt_optimizer"]) == ("768p", 6, False)
    assert data["first_frame_image"].startswith("data:image/png;base64,")
    assert data["last_frame_image"].startswith("data:image/jpeg;base64,")
    polled = {p["path"] for p in emulator.requests("poll")}
    assert polled == {f"/v1/predictions/{entry(spec).job_id}"}


def test_replicate_webhook_options_go_beside_the_input() -> None:
    rep = providers.get("replicate")()
    body = rep.build_request(
        scene("replicate", options={"webhook": "https://example.com/h"}), {}
    ).body
    assert body["webhook"] == "https://example.com/h" and "webhook" not in body["input"]


def _gone(result: Any) -> None:
    error = result.error or ""
    assert result.outcome == "failed"
    assert "was deleted by Replicate, which keeps outputs about an hour" in error, error
    assert "never downloaded here and cannot be fetched any more" in error
    assert "pay for it again with --force s" in (result.hint or "")


def test_a_job_resumed_after_replicate_deleted_its_clip_is_said_to_be_gone(
    write_spec, emulator: Emulator
) -> None:
    """The render stopped while the prediction ran; the next one comes after the clip was
    deleted: it says the clip is gone for good, and pays nothing by itself."""
    spec = write_spec(one_scene("replicate"))
    emulator.configure(job_seconds=3, output_lifetime=0.2)
    env = {**os.environ, **provider_env(emulator)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hailuo_pipe", "render", "--quiet", str(spec)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(20) == 130
    assert entry(spec).state == "submitted"
    job = entry(spec).job_id
    for _ in range(100):  # until the prediction has ended and its output was deleted
        seen = httpx.get(
            f"{emulator.url}/v1/predictions/{job}",
            headers={"Authorization": f"Bearer {emulator.key}"},
        ).json()
        if seen["data_removed"]:
            break
        time.sleep(0.1)
    assert seen["data_removed"] and seen["output"] is None
    (result,) = render(load_storyboard(spec), opts(emulator)).results
    _gone(result)
    assert entry(spec).state == "submitted"  # kept: the job is recorded, and named
    assert paid(emulator) == {"replicate": 1} and emulator.requests("download") == []


def test_a_clip_to_fetch_again_after_replicate_deleted_it_is_said_to_be_gone(
    write_spec, emulator: Emulator
) -> None:
    spec = write_spec(one_scene("replicate"))
    emulator.configure(output_lifetime=0.5)
    first = render(load_storyboard(spec), opts(emulator))
    assert [r.outcome for r in first.results] == ["rendered"]  # downloaded at once: in time
    (spec.parent / "renders" / "hosts" / "s.mp4").unlink()  # lost here, say a fresh checkout
    time.sleep(0.8)
    (result,) = render(load_storyboard(spec), opts(emulator)).results
    _gone(result)
    assert paid(emulator) == {"replicate": 1}


def test_replicate_data_removed_is_gone_not_a_download_url() -> None:
    done = {"status": "succeeded", "output": None, "data_removed": True}
    with pytest.raises(OutputExpired, match="deleted by Replicate"):
        replicate.status_of(done, "p1")
    ok = {"status": "succeeded", "output": "https://replicate.delivery/x.mp4"}
    assert replicate.status_of(ok, "p1").output_url == "https://replicate.delivery/x.mp4"
    assert replicate.status_of({"status": "aborted"}).state == "cancelled"


# -- Replicate: a lost submission, reconciled from the list ---------------------------------------


def _backdate(spec: Any, seconds: float, sid: str = "s") -> None:
    """Move the submission's time back, as if the next run came that much later."""
    path = spec.with_suffix(".lock")
    data = json.loads(path.read_text())
    data["scenes"][sid]["submitted_at"] = iso(time.time() - seconds)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def test_replicate_lost_answer_is_found_in_the_list_and_adopted_saying_so(
    write_spec, emulator: Emulator
) -> None:
    spec = write_spec(one_scene("replicate"))
    emulator.configure(drop={"on": "submit", "count": 1})  # the prediction exists
    events: list[Event] = []
    result = render(load_storyboard(spec), opts(emulator, events))
    assert [r.outcome for r in result.results] == ["rendered"], result
    [job] = emulator.job_list()
    assert paid(emulator) == {"replicate": 1} and len(emulator.requests("submit")) == 1
    assert (entry(spec).state, entry(spec).job_id) == ("done", job["id"])
    adopted = [e for e in events if e.state == "adopted"]
    assert adopted and job["id"] in adopted[0].detail and "prediction list" in adopted[0].detail
    [listed] = emulator.requests("list")
    assert "created_after" in listed["query"]


def test_replicate_no_job_is_resubmitted_only_once_no_request_can_be_in_flight(
    write_spec, emulator: Emulator
) -> None:
    spec = write_spec(one_scene("replicate"))
    emulator.configure(drop={"on": "submit", "when": "before", "count": 1})  # no prediction
    first = render(load_storyboard(spec), opts(emulator))
    assert [r.outcome for r in first.results] == ["failed"]
    assert entry(spec).state == "unknown" and paid(emulator) == {}
    # moments later, a request still on its way could create the job: parked, not resent
    soon = render(load_storyboard(spec), opts(emulator))
    assert "sent too recently to be sure" in (soon.results[0].error or ""), soon
    assert len(emulator.requests("submit")) == 1
    # once no request can be on its way, the whole list without it proves it absent
    _backdate(spec, SETTLE_SECONDS + 5)
    events: list[Event] = []
    later = render(load_storyboard(spec), opts(emulator, events))
    (done,) = later.results
    assert done.outcome == "rendered" and done.cost > 0, later  # a new, paid job: counted
    assert paid(emulator) == {"replicate": 1} and len(emulator.requests("submit")) == 2
    assert any(e.state == "resubmitting" and "no such job" in e.detail for e in events)
    assert entry(spec).state == "done"


def test_replicate_reconcile_is_planned_at_the_scenes_price_so_a_budget_covers_a_resubmit(
    write_spec, emulator: Emulator
) -> None:
    from decimal import Decimal

    from hailuo_pipe.errors import BudgetExceeded

    spec = write_spec(one_scene("replicate"))
    emulator.configure(drop={"on": "submit", "when": "before", "count": 1})
    render(load_storyboard(spec), opts(emulator))
    _backdate(spec, SETTLE_SECONDS + 5)
    price = providers.get("replicate")().price(load_storyboard(spec).scenes[0])
    seen = len(emulator.requests())
    with pytest.raises(BudgetExceeded):  # what it may cost is refused before anything is sent
        render(load_storyboard(spec), opts(emulator, max_cost=price - Decimal("0.01")))
    assert len(emulator.requests()) == seen
    again = render(load_storyboard(spec), opts(emulator, max_cost=price))
    assert [r.outcome for r in again.results] == ["rendered"], again
    assert again.spent == pytest.approx(float(price))
    assert paid(emulator) == {"replicate": 1}


PARTIAL: list[tuple[str, dict[str, Any], str]] = [
    ("list error", {"server_error": {"on": "list", "status": 503}}, "could not be read"),
    ("next page elsewhere", {"foreign_urls": "http://127.0.0.2:9", "list_page_size": 1}, "host"),
    ("too many pages", {"list_page_size": 1}, "more than 2 pages"),
]


@pytest.mark.parametrize(("case", "switches", "why"), PARTIAL, ids=[c[0] for c in PARTIAL])
def test_a_list_read_in_part_never_proves_a_job_absent(
    write_spec,
    emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    switches: dict[str, Any],
    why: str,
) -> None:
    from hailuo_pipe.providers import http

    monkeypatch.setattr(replicate, "MAX_LIST_PAGES", 2)
    monkeypatch.setattr(
        replicate.ReplicateProvider, "retry_policy", http.RetryPolicy(attempts=2, base_delay=0.01)
    )
    others = "".join(
        f'  - id: o{i}\n    provider: replicate\n    prompt: "[Pan left] other {i}"\n'
        "    image: assets/a.png\n"
        for i in range(3)
    )
    spec = write_spec(one_scene("replicate") + others)
    emulator.configure(drop={"on": "submit", "when": "before", "count": 1})
    render(load_storyboard(spec), opts(emulator, concurrency=1))
    lost = next(sid for sid in ("s", "o0", "o1", "o2") if entry(spec, sid).state == "unknown")
    assert paid(emulator) == {"replicate": 3}  # the other three, newer in the list than none
    _backdate(spec, SETTLE_SECONDS + 5, lost)
    emulator.configure(**switches)
    again = render(load_storyboard(spec), opts(emulator))
    error = next(r.error for r in again.results if r.scene == lost) or ""
    assert why in error, error
    assert entry(spec, lost).state == "unknown"
    assert len(emulator.requests("submit")) == 4  # never resent
    assert paid(emulator) == {"replicate": 3}


def test_a_prediction_with_our_prompt_but_other_input_means_cannot_tell(
    emulator: Emulator,
) -> None:
    rep = providers.get("replicate")(base_url=emulator.url, api_key=emulator.key)
    ours = rep.build_request(scene("replicate"), {})
    rewritten = rep.build_request(scene("replicate", prompt_optimizer=True), {})

    async def go() -> tuple[Reconciled, Reconciled]:
        async with httpx.AsyncClient(timeout=5) as client:
            since = time.time() - 1
            await rep.submit(client, rewritten, "k")
            close = await rep.reconcile(client, "k", ours, since - SETTLE_SECONDS)
            found = await rep.reconcile(client, "k", rewritten, since)
            return close, found

    close, found = asyncio.run(go())
    assert (close.job_id, close.absent) == (None, False) and "close" in close.why
    assert found.job_id == emulator.job_list()[0]["id"]


def test_replicate_predictions_older_than_the_submission_are_not_taken_for_it(
    emulator: Emulator,
) -> None:
    rep = providers.get("replicate")(base_url=emulator.url, api_key=emulator.key)
    request = rep.build_request(scene("replicate"), {})

    async def go() -> Reconciled:
        async with httpx.AsyncClient(timeout=5) as client:
            await rep.submit(client, request, "k")  # an earlier render of the same request
            return await rep.reconcile(client, "k", request, time.time() + 120)

    found = asyncio.run(go())
    assert found.job_id is None
    [listed] = emulator.requests("list")
    assert listed["query"]["created_after"] > iso(time.time())
