"""Bounded memory: the peak RSS of `validate` and `render` children on hostile input.

tests/test_hostile.py caps the children's address space (a bomb must fail, not take the host);
this measures how much they really used (`os.wait4` of exactly that child), under the same
cap, against a bound, so a change that starts reading a bomb or a clip into memory fails here
long before it would hit the cap.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from support import soak
from support.emulator_fixture import provider_env
from test_hostile import HUGE, MEMORY_CAP

from hailuo_emulator import Emulator

MB = 1024 * 1024
BOUND = 150 * MB  # peak RSS of one command; `hailuo-pipe --version` alone is about 55 MB
# 9**9 list items are refused only once the aliases are counted: about 290 MB on the way
HEAVY = {"billion laughs": 400 * MB}


# Runs the child from a small interpreter of its own: Linux keeps a process's peak RSS across
# fork and exec, so a child forked from pytest itself (hundreds of MB late in a session) would
# be measured as at least that big.
_LAUNCHER = """
import os, resource, subprocess, sys
cap, report = int(sys.argv[1]), sys.argv[2]
proc = subprocess.Popen(
    sys.argv[3:], preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
)
_, status, usage = os.wait4(proc.pid, 0)
with open(report, "w") as f:
    f.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""


def peak_rss(args: list[str], env: dict[str, str] | None = None) -> tuple[int, int, str]:
    """`hailuo-pipe ARGS` in a child capped at MEMORY_CAP: (exit code, peak RSS bytes, stderr)."""
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryFile() as err:
        report = Path(tmp) / "usage"
        command = [sys.executable, "-m", "hailuo_pipe", *args]
        subprocess.run(
            [sys.executable, "-c", _LAUNCHER, str(MEMORY_CAP), str(report), *command],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, **(env or {})},
            check=False,
        )
        code, maxrss = (int(v) for v in report.read_text().split())
        err.seek(0)
        print(f"\nFIGURES peak RSS of {args[0]}: {maxrss / 1024:.0f} MB")
        return code, maxrss * 1024, err.read().decode(errors="replace")


@pytest.mark.parametrize(
    "name", ["billion laughs", "string alias bomb", "9 MB file", "a million scenes by foreach"]
)
def test_validate_of_a_bomb_stays_under_the_bound(name: str, tmp_path: Path) -> None:
    spec = tmp_path / "bomb.yaml"
    spec.write_text(HUGE[name](), encoding="utf-8")
    code, rss, stderr = peak_rss(["validate", str(spec)])
    assert "Traceback" not in stderr and "MemoryError" not in stderr, stderr[-2000:]
    assert code == 1
    assert rss < HEAVY.get(name, BOUND), f"{name}: {rss / MB:.0f} MB"


def test_render_of_an_accepted_merge_bomb_stays_under_the_bound(tmp_path: Path) -> None:
    """The merge-key bomb expands to a valid storyboard: rendered (preview), not just checked."""
    spec = tmp_path / "bomb.yaml"
    spec.write_text(
        HUGE["merge-key bomb"]().replace("preview", "preview\n    resolution: 512p"),
        encoding="utf-8",
    )
    code, rss, stderr = peak_rss(["render", "--quiet", str(spec)])
    assert code == 0, stderr[-2000:]
    assert rss < BOUND, f"{rss / MB:.0f} MB"


def test_a_large_clip_is_streamed_not_held(emulator: Emulator, tmp_path: Path) -> None:
    """A 120 MB clip from a provider: downloaded, hashed and probed in bounded memory."""
    emulator.reset(job_seconds=0.1, output_bytes=120 * MB)
    spec = soak.write_workdir(tmp_path, 1)
    code, rss, stderr = peak_rss(["render", "--quiet", str(spec)], provider_env(emulator))
    assert code == 0, stderr[-2000:]
    assert soak.verify_outputs(spec, 1) == []
    assert rss < 120 * MB, f"{rss / MB:.0f} MB for a 120 MB clip"


def test_the_measure_can_fail(tmp_path: Any) -> None:
    """The bound means something: a child that holds 200 MB is measured as holding it."""
    code, rss, _ = peak_rss(["--version"])
    assert code == 0 and rss < BOUND
    hog = subprocess.Popen([sys.executable, "-c", "b = bytearray(200 * 1024 * 1024)"])
    _, _, usage = os.wait4(hog.pid, 0)
    assert usage.ru_maxrss * 1024 > 200 * MB
