"""Issue 13: mistakes get names. A mistyped --var, scene id or image file is answered with the
nearest real name, and a --var the storyboard does not declare is a usage error (exit 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SPEC = """
version: 1
name: t
vars:
  place: Oslo
defaults:
  provider: preview
scenes:
  - id: dawn
    prompt: "at {{ place }}"
    image: assets/a.png
  - id: dusk
    prompt: "later"
"""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hailuo_pipe", *args], capture_output=True, text=True, check=False
    )


def test_undeclared_var_is_a_usage_error_with_the_nearest_name(write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = write_spec(SPEC)
    for command in ("validate", "plan", "render"):
        result = _run(command, "--var", "plase=Lima", str(spec))
        assert result.returncode == 2, (command, result.stderr)
        assert "'plase'" in result.stderr and "did you mean 'place'?" in result.stderr
        assert "Traceback" not in result.stderr
    assert not spec.with_suffix(".lock").exists()  # nothing was rendered
    assert _run("validate", "--var", "place=Lima", str(spec)).returncode == 0


@pytest.mark.parametrize(
    ("command", "option", "value"),
    [
        ("render", "--scene", "dwan"),
        ("render", "--force", "dwan"),
        ("render", "--adopt", "dwan=job-1"),
        ("plan", "--force", "dwan"),
    ],
)
def test_unknown_scene_ids_get_did_you_mean(
    write_spec,  # type: ignore[no-untyped-def]
    command: str,
    option: str,
    value: str,
) -> None:
    spec = write_spec(SPEC)
    result = _run(command, option, value, str(spec))
    assert result.returncode == 2, result.stderr
    assert "no scene 'dwan'" in result.stderr and "did you mean 'dawn'?" in result.stderr
    assert not spec.with_suffix(".lock").exists()


def test_missing_image_names_the_nearest_file_in_its_folder(write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = write_spec(SPEC.replace("assets/a.png", "assets/b.jpeg"))
    result = _run("validate", str(spec))
    assert result.returncode == 1
    assert "image file not found: assets/b.jpeg (did you mean 'b.jpg'?)" in result.stderr
    assert f"{Path(spec)}:10:12:" in result.stderr


def test_unknown_frame_references_and_sequence_entries_get_did_you_mean(write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = write_spec(
        SPEC + "    image: {from: dwan}\noutput: {path: cut.mp4, sequence: [dawn, dusc]}\n"
    )
    result = _run("validate", str(spec))
    assert result.returncode == 1
    assert "scene 'dwan', which does not exist (did you mean 'dawn'?)" in result.stderr
    assert "scene 'dusc', which does not exist (did you mean 'dusk'?)" in result.stderr
