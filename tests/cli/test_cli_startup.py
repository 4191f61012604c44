"""Start-up: `--help`, `--version` and `render --help` load click and the CLI, nothing heavy.

Each command runs in a fresh interpreter under `-X importtime`, whose report lists every module
imported; none of the heavy libraries a command body needs may be among them.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from hailuo_pipe import providers
from hailuo_pipe.cli.common import PROVIDER_NAMES

HEAVY = {"asyncio", "jinja2", "PIL", "yaml", "httpx", "av", "jsonschema", "ssl"}
# not heavy, but a command's, not help's: together about 4 ms of help's 80 ms budget
NEEDLESS = {"json", "pathlib", "urllib"}


def imported(*args: str) -> list[str]:
    got = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "hailuo_pipe", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert got.returncode == 0, got.stderr[-2000:]
    return [
        line.rsplit("|", 1)[1].strip()
        for line in got.stderr.splitlines()
        if line.startswith("import time:") and "cumulative" not in line
    ]


@pytest.mark.parametrize(
    "args", [["--help"], ["--version"], ["render", "--help"], ["cache", "ls", "--help"]]
)
def test_help_and_version_load_no_heavy_module(args: list[str]) -> None:
    modules = imported(*args)
    assert "click" in modules  # the report was read: click is always there
    heavy = sorted({m for m in modules if m.split(".")[0] in HEAVY | NEEDLESS})
    assert heavy == []
    # a loose bound, not a timing: today about 135 modules, most of them the stdlib's
    assert len(modules) < 200, len(modules)


def test_the_cli_lists_every_provider_without_importing_them() -> None:
    """`--provider`'s choices are a copy of the registry's names, so help stays light."""
    assert PROVIDER_NAMES == providers.PROVIDER_NAMES
