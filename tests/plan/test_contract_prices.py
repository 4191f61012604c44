"""Issue 13: prices come from the exact wire request, the lockfile says what each clip cost and
where the figure came from, and a storyboard's `budget:` is enforced like --max-cost."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from support.emulator_fixture import provider_env

from hailuo_emulator import Emulator
from hailuo_pipe import providers
from hailuo_pipe.plan import make_plan
from hailuo_pipe.providers.apiframe import status_of as apiframe_status
from hailuo_pipe.state.lockfile import Lockfile
from hailuo_pipe.storyboard.model import Scene
from hailuo_pipe.validate import check, load_storyboard

HOSTED = ("wavespeed", "gmicloud", "minimax", "runware", "apiframe", "fal", "replicate")


def _scene(provider: str, **kw: object) -> Scene:
    base: dict[str, object] = dict(
        id="a", prompt="hello", provider=provider, duration=6, resolution="768p",
        prompt_optimizer=False,
    )  # fmt: skip
    return Scene(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", HOSTED)
def test_every_listed_price_is_read_back_from_the_built_request(name: str) -> None:
    cls = providers.get(name)
    for (resolution, duration), listed in cls.prices.items():
        scene = _scene(name, resolution=resolution, duration=duration)
        request = cls().build_request(scene, {"image": "https://example.com/a.png"})
        assert cls().priced_as(request) == (resolution, duration)
        assert cls().price_of(request) == listed


@pytest.mark.parametrize("name", HOSTED)
def test_the_price_is_that_of_the_wire_request_not_of_the_scene(name: str) -> None:
    # validate refuses such options; a library caller that skips validate still pays the plan
    cls = providers.get(name)
    scene = _scene(name, options={"duration": 10})
    assert cls().price(scene) == cls.prices[("768p", 10)] != cls.prices[("768p", 6)]


def test_the_plan_prices_the_merged_request(tmp_path: Path) -> None:
    spec = tmp_path / "t.yaml"
    spec.write_text("version: 1\nname: t\nscenes: [{id: a, prompt: hello}]\n", encoding="utf-8")
    board = load_storyboard(spec, provider="runware")
    board = dataclasses.replace(
        board, scenes=(_scene("runware", options={"duration": 10}),)
    )  # fmt: skip
    plan = make_plan(board, Lockfile.load(board.lock_path, board.name))
    assert plan.cost == Decimal("0.56")


def test_apiframe_credit_cost_is_the_provider_figure() -> None:
    done = {"status": "COMPLETED", "result": {"urls": ["https://x.test/c.mp4"]}, "creditCost": 8}
    assert apiframe_status(done).cost == pytest.approx(0.8)
    assert apiframe_status({**done, "creditCost": "lots"}).cost is None


@pytest.mark.parametrize("value", ["0", "-1", "cheap", "true"])
def test_budget_must_be_a_positive_number(write_spec, value: str) -> None:  # type: ignore[no-untyped-def]
    spec = write_spec(
        f"version: 1\nname: t\nbudget: {value}\n"
        "scenes: [{id: a, prompt: x, provider: preview}]\n"
    )
    _, problems = check(spec)
    assert [(p.line, p.message) for p in problems] == [
        (3, "budget must be a positive number of US dollars")
    ]


SPEC = """
version: 1
name: spend
budget: 0.30
scenes:
  - id: wide
    provider: runware
    prompt: "[Aerial] the harbor"
    resolution: 1080p
  - id: close
    provider: minimax
    prompt: "[Push in] the cranes"
    resolution: 512p
    image: assets/a.png
"""


def _render(spec: Path, emu: Emulator, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hailuo_pipe", "render", "-q", *args, str(spec)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **provider_env(emu)},
    )


def test_budget_refuses_then_max_cost_overrides_and_the_lockfile_says_where_costs_came_from(
    write_spec,  # type: ignore[no-untyped-def]
    emulator: Emulator,
) -> None:
    spec = write_spec(SPEC)
    refused = _render(spec, emulator)
    assert refused.returncode == 1, refused.stderr
    assert "$0.59" in refused.stderr and "budget: $0.30" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert emulator.requests() == []  # nothing was sent
    done = _render(spec, emulator, "--max-cost", "1")
    assert done.returncode == 0, done.stderr
    assert "spent $0.59 (planned $0.59)" in done.stdout
    lock = json.loads(spec.with_suffix(".lock").read_text(encoding="utf-8"))
    wide, close = lock["scenes"]["wide"], lock["scenes"]["close"]
    assert (wide["cost"], wide["cost_source"]) == (0.49, "provider")  # Runware's answer
    assert (close["cost"], close["cost_source"]) == (0.10, "price-list")  # MiniMax says none
    again = _render(spec, emulator)  # up to date: the budget has nothing to refuse
    assert again.returncode == 0, again.stderr
    assert "spent $0.00 (planned $0.00)" in again.stdout
