"""Durations are the whole numbers 6 or 10 (issue 15 item 18).

`duration: 6.0` passed `validate` (JSON Schema's enum compares numbers by value) and WaveSpeed
then refused the request with a 400. It is now refused at validate, located, like "6" and true,
before anything is sent: refusing keeps one spelling per value, as for every other field.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.emulator_fixture import provider_env

from hailuo_emulator import Emulator

SPEC = """
version: 1
name: dur
defaults:
  provider: wavespeed
scenes:
  - id: a
    prompt: a harbor at dawn
    duration: {value}
"""


def run(emu: Emulator, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hailuo_pipe", *args],
        env={**os.environ, **provider_env(emu)},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("value", ["6.0", "10.0", "6.5", '"6"', "true", "'10'"])
def test_a_duration_that_is_not_a_whole_number_is_refused_where_it_is(
    value: str, write_spec: Any, emulator: Emulator
) -> None:
    spec: Path = write_spec(SPEC.format(value=value), name="dur.yaml")
    for command in ("validate", "plan", "render"):
        proc = run(emulator, command, str(spec))
        assert proc.returncode == 1, (command, proc.stdout)
        assert "Traceback" not in proc.stderr
        assert re.search(rf"^{re.escape(str(spec))}:8:15: duration must be", proc.stderr, re.M), (
            proc.stderr
        )
    assert emulator.requests() == []  # nothing was sent, so nothing for WaveSpeed to refuse


def test_a_float_default_duration_is_refused_once_at_the_default(
    write_spec: Any, emulator: Emulator
) -> None:
    text = SPEC.format(value="6").replace("defaults:\n", "defaults:\n  duration: 10.0\n")
    text += "  - id: b\n    prompt: another shot\n"
    spec: Path = write_spec(text, name="dur.yaml")
    proc = run(emulator, "validate", str(spec))
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"{spec}:4:13: duration must be the whole number 6 or 10 (seconds): write 10, not 10.0",
        "1 problem found",
    ]


def test_whole_durations_still_render(write_spec: Any, emulator: Emulator) -> None:
    spec: Path = write_spec(SPEC.format(value="10"), name="dur.yaml")
    proc = run(emulator, "render", "--quiet", str(spec))
    assert proc.returncode == 0, proc.stderr
    [job] = emulator.job_list()
    assert job["body"]["duration"] == 10 and type(job["body"]["duration"]) is int
