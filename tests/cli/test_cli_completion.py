"""Shell completion through click's `_HAILUO_PIPE_COMPLETE`: the scripts for bash, zsh and
fish, and scene ids completed for --scene, --force, --resubmit and --adopt from the storyboard
on the command line, run as a shell runs it (a fresh process with the variables set)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

STORY = """
version: 1
name: comp
vars: {city: Lima}
defaults: {provider: preview}
scenes:
  - id: dawn
    prompt: dawn
  - id: "{{ city | lower }}-dusk"
    prompt: dusk
    image: {from: dawn, frame: last}
  - id: tower
    prompt: tower
"""


def complete(shell: str, words: str, cword: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "_HAILUO_PIPE_COMPLETE": f"{shell}_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": cword,
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        [sys.executable, "-m", "hailuo_pipe"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("shell", "marker"),
    [
        ("bash", "complete -o nosort -F _hailuo_pipe_completion hailuo-pipe"),
        ("zsh", "#compdef hailuo-pipe"),
        ("fish", "complete --no-files --command hailuo-pipe"),
    ],
)
def test_each_shell_gets_its_script(shell: str, marker: str) -> None:
    got = subprocess.run(
        [sys.executable, "-m", "hailuo_pipe"],
        env={"_HAILUO_PIPE_COMPLETE": f"{shell}_source", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert got.returncode == 0 and marker in got.stdout, got.stdout + got.stderr


def test_scene_ids_complete_as_the_render_would_name_them(write_spec: Any) -> None:
    spec = write_spec(STORY)
    got = complete("bash", "hailuo-pipe render story.yaml --scene ", "4", spec.parent)
    assert got.stdout.split() == ["plain,dawn", "plain,lima-dusk", "plain,tower"]
    # with the --var typed before it, a foreach or templated id comes out as it will be
    words = "hailuo-pipe render --var city=Oslo story.yaml --force "
    got = complete("bash", words, "6", spec.parent)
    assert "plain,oslo-dusk" in got.stdout.split()


def test_a_prefix_narrows_and_adopt_completes_the_id_and_its_equals_sign(
    write_spec: Any,
) -> None:
    spec = write_spec(STORY)
    zsh = complete("zsh", "hailuo-pipe plan story.yaml --resubmit t", "4", spec.parent)
    assert zsh.stdout.split("\n")[:3] == ["plain", "tower", "preview"]  # type, value, help
    fish = complete("fish", "hailuo-pipe render story.yaml --adopt d", "d", spec.parent)
    assert fish.stdout.strip() == "plain,dawn=\tpreview"


@pytest.mark.parametrize(
    "text", ["scenes: [\n", "version: 1\nname: x\nscenes: [{id: a}]\n", "\x00binary"]
)
def test_a_broken_or_missing_storyboard_completes_nothing_and_never_a_traceback(
    tmp_path: Path, text: str
) -> None:
    (tmp_path / "broken.yaml").write_text(text)
    for spec in ("broken.yaml", "missing.yaml"):
        got = complete("bash", f"hailuo-pipe render {spec} --scene ", "4", tmp_path)
        assert got.returncode == 0
        assert got.stdout.strip() == "" and "Traceback" not in got.stderr, got.stderr
