"""Issue 13, "the plan is the contract": validate refuses what would make the wire differ from
the plan, names mistakes, and reports every independent problem in one run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hailuo_pipe.validate import check


def _spec(write_spec, provider: str, options: str, extra: str = "") -> Path:  # type: ignore[no-untyped-def]
    head = (
        f"version: 1\nname: t\ndefaults:\n  provider: {provider}\nscenes:\n  - id: a\n"
        f"    prompt: hello\n    duration: 6\n    image: https://example.com/a.png{extra}\n"
        "    options:\n"
    )
    return write_spec(head + "".join(f"      {line}\n" for line in options.splitlines()))


def _messages(spec: Path) -> list[str]:
    _, problems = check(spec)
    return [f"{p.line}:{p.col}: {p.message}" for p in problems]


def test_runware_options_cannot_override_duration_or_prompt(write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = _spec(
        write_spec,
        "runware",
        "duration: 10\npositivePrompt: something else\noutputQuality: 90\n",
    )
    result = subprocess.run(
        [sys.executable, "-m", "hailuo_pipe", "validate", str(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{spec}:11:17: options.duration" in result.stderr
    assert "options.duration: set the scene's `duration` instead" in result.stderr
    assert "options.positivePrompt: set the scene's `prompt` instead" in result.stderr
    assert "outputQuality" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("provider", "options", "line", "field"),
    [
        # nested: Runware's providerSettings.minimax.promptOptimizer is the scene's optimizer
        (
            "runware",
            "providerSettings:\n  minimax:\n    promptOptimizer: true\n",
            13,
            "providerSettings.minimax.promptOptimizer: set the scene's `prompt_optimizer`",
        ),
        ("runware", "width: 1920\n", 11, "width: set the scene's `resolution`"),
        ("runware", "taskUUID: x\n", 11, "taskUUID: hailuo-pipe sets this for Runware itself"),
        ("minimax", "resolution: 1080P\n", 11, "resolution: set the scene's `resolution`"),
        ("minimax", "model: other\n", 11, "model: hailuo-pipe sets this for MiniMax itself"),
        # Apiframe puts options into hailuoParams, GMI into payload
        ("apiframe", "duration: 10\n", 11, "duration: set the scene's `duration`"),
        ("apiframe", "prompt: other\n", 11, "prompt: set the scene's `prompt`"),
        ("gmicloud", "prompt_optimizer: true\n", 11, "prompt_optimizer: set the scene's"),
        ("gmicloud", "first_frame_image: x\n", 11, "first_frame_image: set the scene's `image`"),
        ("wavespeed", "enable_prompt_expansion: 1\n", 11, "enable_prompt_expansion: set the"),
        ("wavespeed", "end_image: https://e.com/b\n", 11, "end_image: set the scene's `end_"),
    ],
)
def test_options_that_replace_a_scene_field_are_refused(
    write_spec,  # type: ignore[no-untyped-def]
    provider: str,
    options: str,
    line: int,
    field: str,
) -> None:
    messages = _messages(_spec(write_spec, provider, options))
    assert any(m.startswith(f"{line}:") and f"options.{field}" in m for m in messages), messages


@pytest.mark.parametrize(
    ("provider", "options"),
    [
        ("runware", "outputQuality: 90\nproviderSettings:\n  minimax:\n    other: 1\n"),
        ("apiframe", "webhook_url: https://example.com/hook\n"),
    ],
)
def test_options_that_are_not_scene_fields_still_pass(
    write_spec,  # type: ignore[no-untyped-def]
    provider: str,
    options: str,
) -> None:
    messages = _messages(_spec(write_spec, provider, options))
    assert not [m for m in messages if "set the scene's" in m or "sets this" in m], messages


def test_an_overriding_option_does_not_hide_another_bad_option(write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = _spec(write_spec, "runware", "duration: 10\nbogus: 1\n")
    messages = sorted(_messages(spec))
    assert len(messages) == 2, messages
    assert messages[0].startswith("11:") and "options.duration: set the scene's" in messages[0]
    assert messages[1].startswith("12:") and "bogus" in messages[1]


def test_an_empty_mapping_replacing_a_scene_field_is_refused(write_spec) -> None:  # type: ignore[no-untyped-def]
    messages = _messages(_spec(write_spec, "minimax", "duration: {}\n"))
    assert any("options.duration: set the scene's `duration`" in m for m in messages), messages


def _field_cases() -> list[tuple[str, str, str]]:
    from hailuo_pipe import providers

    return [
        (name, wire, origin)
        for name in ("wavespeed", "gmicloud", "minimax", "runware", "apiframe", "fal", "replicate")
        for wire, origin in providers.get(name).field_origins.items()
    ]


@pytest.mark.parametrize(("provider", "wire", "origin"), _field_cases())
def test_every_wire_field_a_scene_key_fills_is_refused_as_an_option(
    write_spec,  # type: ignore[no-untyped-def]
    provider: str,
    wire: str,
    origin: str,
) -> None:
    messages = _messages(_spec(write_spec, provider, f"{wire}: 1\n"))
    assert any(
        m.startswith("11:") and f"options.{wire}: set the scene's `{origin}` instead" in m
        for m in messages
    ), messages


def test_a_prompt_cannot_pass_for_an_option(write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = write_spec(
        "version: 1\nname: t\ndefaults: {provider: runware}\nscenes:\n  - id: a\n"
        '    prompt: "\\0hailuo-pipe-option:outputQuality \\0option-0:outputQuality"\n'
        "    options: {outputQuality: 90}\n"
    )
    assert not [m for m in _messages(spec) if "set the scene's" in m or "sets this" in m]
