"""The render's progress: the header's counts, states as recorded, a live table on a real
terminal (tmux), and plain lines with a heartbeat in a log (a pipe)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from io import StringIO
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from support.emulator_fixture import provider_env

from hailuo_emulator import Emulator
from hailuo_pipe.cli.progress import LiveTable, LogLines, Progress, Row, rows_of
from hailuo_pipe.render import Event

HEADER = re.compile(
    r"^(\d+)/(\d+) done · (\d+) running · \$(\d+\.\d\d) spent · \$(\d+\.\d\d) in flight"
    r" · ETA (~\w+|\?)$"
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_header_counts_done_running_spent_in_flight_and_an_eta() -> None:
    clock = Clock()
    p = Progress(concurrency=2, clock=clock)
    p.seed(Row(f"s{i}", "wavespeed", "create", 0.23 if i < 4 else 0.28, "planned")
           for i in range(7))
    assert p.header() == "0/7 done · 0 running · $0.00 spent · $0.00 in flight · ETA ?"
    for i in range(4):  # four jobs of 100 s each, finished
        p.apply(Event(f"s{i}", "succeeded", "wavespeed", "job j", 100.0))
        p.apply(Event(f"s{i}", "done", "wavespeed", "job j"))
    for i in (4, 5):  # two submitted 50 s ago, running
        p.apply(Event(f"s{i}", "submitting", "wavespeed"))
        p.apply(Event(f"s{i}", "submitted", "wavespeed", "job k"))
    clock.now += 50
    for i in (4, 5):
        p.apply(Event(f"s{i}", "running", "wavespeed", "job k", 50.0))
    # left: 50 s of each running job and a 100 s job not started, over two slots: 100 s
    assert p.header() == "4/7 done · 2 running · $0.92 spent · $0.56 in flight · ETA ~1m40"


def test_a_job_recorded_submitted_shows_submitted_until_an_event_says_more() -> None:
    entry = SimpleNamespace(state="submitted")
    scene = SimpleNamespace(id="old", provider="wavespeed")
    plan = SimpleNamespace(
        steps=[
            SimpleNamespace(scene=scene, action="resume", price=Decimal("0.23"), entry=entry),
            SimpleNamespace(
                scene=SimpleNamespace(id="kept", provider="wavespeed"),
                action="reuse",
                price=Decimal(0),
                entry=None,
            ),
        ]
    )
    table = LiveTable(Progress())
    table.on_plan(plan)  # type: ignore[arg-type]
    assert [(r.scene, r.state) for r in rows_of(plan)] == [  # type: ignore[arg-type]
        ("old", "submitted"),
        ("kept", "reused"),
    ]
    # a recorded job is at the provider: running and in flight before anything is polled
    assert table.progress.header().startswith("1/2 done · 1 running · $0.00 spent · $0.23 in")
    table.progress.apply(Event("old", "running", "wavespeed", "job j", 30.0))
    assert table.progress.rows["old"].state == "running"


def test_a_log_gets_a_line_per_change_and_the_counts_every_30_seconds() -> None:
    clock = Clock()
    out = StringIO()
    log = LogLines(Progress(clock=clock), out=out)
    log.progress.seed([Row("a", "preview", "create", 0.0, "planned")])
    log(Event("a", "running", "preview", "rendering locally"))
    for step in (10, 21, 14, 17):  # ticks at 10, 31, 45 and 62 s
        clock.now += step
        log(Event("", "tick", ""))
    log(Event("a", "done", "preview", "", 62.0))
    lines = out.getvalue().splitlines()
    beats = [line.split(" ", 1)[1] for line in lines if " done · " in line]
    assert beats == ["0/1 done · 1 running · $0.00 spent · $0.00 in flight · ETA ?"] * 2
    assert [line.split()[2] for line in lines if " done · " not in line] == ["running", "done"]
    assert "\x1b" not in out.getvalue()


STORY = """
version: 1
name: live
defaults: {provider: wavespeed, resolution: 768p}
scenes:
  - id: dawn
    prompt: dawn
  - id: escape
    prompt: escape
    image: {from: dawn, frame: last}
  - id: market
    prompt: market
  - id: bridge
    prompt: bridge
  - id: tower
    prompt: tower
"""


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_a_terminal_shows_a_live_table_under_the_header(
    write_spec: Any, emulator: Emulator
) -> None:
    emulator.configure(job_seconds=2.0)
    spec = write_spec(STORY)
    env = " ".join(f"{k}={v}" for k, v in provider_env(emulator).items())
    session = f"hp-{uuid.uuid4().hex[:8]}"
    command = (
        f"cd {spec.parent} && env {env} {sys.executable} -m hailuo_pipe render -j 2 "
        f"{spec.name}; echo EXIT=$?; sleep 30"
    )
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "40", command], check=True
    )
    screens = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            screen = subprocess.run(
                ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
            ).stdout
            screens.append(screen)
            if "EXIT=" in screen:
                break
            time.sleep(0.2)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    final = screens[-1]
    assert "EXIT=0" in final, final
    headers = [m for s in screens for line in s.splitlines() if (m := HEADER.match(line))]
    assert headers, screens[len(screens) // 2]
    assert all(m.group(2) == "5" for m in headers)
    assert any(m.group(3) != "0" and m.group(5) != "0.00" for m in headers)  # jobs in flight
    assert any(m.group(6).startswith("~") for m in headers)  # an ETA once a job finished
    tables = [s for s in screens if re.search(r"^scene +state +provider +time", s, re.M)]
    assert any(re.search(r"^\w+ +(submitted|running) +wavespeed", s, re.M) for s in tables)
    # the live table gives way to the summary, and each scene's end stays in the scroll-back
    assert not any(HEADER.match(line) for line in final.splitlines())
    assert "story.yaml: 5 rendered; spent $1.15 (planned $1.15)" in final
    assert all(re.search(rf"^  {sid} +done", final, re.M) for sid in ("dawn", "escape", "tower"))


def test_a_pipe_gets_plain_lines_one_per_state_change(write_spec: Any, emulator: Emulator) -> None:
    spec = write_spec(STORY)
    got = subprocess.run(
        [sys.executable, "-m", "hailuo_pipe", "render", str(spec)],
        capture_output=True,
        text=True,
        env={**provider_env(emulator), "PATH": "/usr/bin:/bin"},
        timeout=120,
        cwd=Path(spec).parent,
    )
    assert got.returncode == 0, got.stderr
    assert "\x1b" not in got.stderr + got.stdout
    states = [line.split()[1:3] for line in got.stderr.splitlines()]
    for sid in ("dawn", "escape", "market", "bridge", "tower"):
        mine = [state for scene, state in states if scene == sid]
        assert mine[0] == "submitting" and mine[1] == "submitted" and mine[-1] == "done", mine
        assert mine.count("done") == 1
