"""The storyboard language: defaults, templates, foreach, frame references, the CLI's validate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hailuo_pipe.cli import main
from hailuo_pipe.errors import SpecError
from hailuo_pipe.storyboard.model import FrameRef
from hailuo_pipe.validate import load_storyboard

BASE = """
version: 1
name: t
vars:
  city: Oslo
defaults:
  provider: preview
  duration: 10
scenes:
"""


def test_defaults_templates_and_frame_refs(write_spec) -> None:
    spec = write_spec(
        BASE
        + """
  - id: dawn
    prompt: "Over {{ city }} at dawn"
    image: assets/a.png
  - id: dusk
    prompt: "{{ city | upper }} at dusk"
    duration: 6
    resolution: 1080p
    image: {from: dawn, frame: last}
    end_image: https://example.com/end.jpg
"""
    )
    board = load_storyboard(spec)
    dawn, dusk = board.scenes
    assert (dawn.prompt, dawn.duration, dawn.resolution) == ("Over Oslo at dawn", 10, "768p")
    assert dawn.image is not None and dawn.image.path == spec.parent / "assets/a.png"
    assert (dusk.prompt, dusk.duration, dusk.resolution) == ("OSLO at dusk", 6, "1080p")
    assert dusk.image is not None and dusk.image.ref == FrameRef("dawn", "last")
    assert dusk.end_image is not None and dusk.end_image.url == "https://example.com/end.jpg"
    assert board.lock_path == spec.with_suffix(".lock")


def test_var_override(write_spec) -> None:
    spec = write_spec(BASE + '  - id: a\n    prompt: "in {{ city }}"\n')
    assert load_storyboard(spec, overrides={"city": "Lima"}).scenes[0].prompt == "in Lima"


def test_foreach_matrix_and_rows(write_spec) -> None:
    spec = write_spec(
        BASE
        + """
  - id: "{{ city | lower }}-{{ time }}"
    foreach:
      city: [Oslo, Lima]
      time: [dawn, dusk]
    prompt: "{{ city }} at {{ time }}"
  - id: "shot-{{ n }}"
    foreach: [{n: 1, look: warm}, {n: 2, look: cold}]
    prompt: "{{ look }} light"
    image: {from: "oslo-{{ 'dawn' if n == 1 else 'dusk' }}"}
"""
    )
    board = load_storyboard(spec)
    ids = [s.id for s in board.scenes]
    assert ids == ["oslo-dawn", "oslo-dusk", "lima-dawn", "lima-dusk", "shot-1", "shot-2"]
    assert board.scene("lima-dusk").prompt == "Lima at dusk"
    assert board.scene("shot-2").image.ref == FrameRef("oslo-dusk", "last")  # type: ignore[union-attr]


def test_include_and_macros_from_templates_folder(write_spec, tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "look.j2").write_text("cold light, {{ city }} grade")
    (tmp_path / "templates" / "macros.j2").write_text(
        "{% macro shot(kind) %}[{{ kind }}]{% endmacro %}"
    )
    spec = write_spec(
        BASE
        + """
  - id: a
    prompt: >-
      {% from 'macros.j2' import shot %}{{ shot('Push in') }} harbor, {% include 'look.j2' %}
"""
    )
    assert load_storyboard(spec).scenes[0].prompt == "[Push in] harbor, cold light, Oslo grade"


def test_template_error_points_into_block_prompt(write_spec) -> None:
    spec = write_spec(
        BASE
        + """
  - id: a
    prompt: |
      first line
      second {{ missing }}
"""
    )
    with pytest.raises(SpecError) as err:
        load_storyboard(spec)
    (problem,) = err.value.problems
    assert "undefined variable 'missing'" in problem.message
    assert problem.line == 11  # the block starts on line 11 of the file


def test_all_problems_reported_in_one_run(write_spec) -> None:
    spec = write_spec(
        BASE
        + """
  - id: a
    prompt: "{{ nope }}"
  - id: b
    prompt: x
    image: assets/missing.png
  - id: c
    prompt: x
    image: {from: zzz}
"""
    )
    with pytest.raises(SpecError) as err:
        load_storyboard(spec)
    lines = sorted(p.line for p in err.value.problems)
    assert lines == [11, 14, 17]


def test_cli_validate_ok_and_json(write_spec) -> None:
    spec = write_spec(BASE + "  - id: a\n    prompt: x\n")
    runner = CliRunner()
    ok = runner.invoke(main, ["validate", str(spec)])
    assert ok.exit_code == 0, ok.output
    assert "ok (1 scene)" in ok.output
    as_json = runner.invoke(main, ["validate", "--json", str(spec)])
    assert json.loads(as_json.output) == {"ok": True, "errors": [], "scenes": {str(spec): 1}}


def test_cli_validate_errors_exit_1_without_traceback(write_spec) -> None:
    spec = write_spec(BASE + "  - id: a\n    prompt: x\n    duration: 7\n")
    result = CliRunner().invoke(main, ["validate", str(spec)])
    assert result.exit_code == 1
    assert f"{spec}:11:15: duration must be 6 or 10" in result.output
    assert "Traceback" not in result.output
    as_json = CliRunner().invoke(main, ["validate", "--json", str(spec)])
    data = json.loads(as_json.output)
    assert data["ok"] is False and data["errors"][0]["line"] == 11


def test_cli_usage_error_exits_2(write_spec) -> None:
    spec = write_spec(BASE + "  - id: a\n    prompt: x\n")
    result = CliRunner().invoke(main, ["validate", "--var", "not-a-pair", str(spec)])
    assert result.exit_code == 2
    assert CliRunner().invoke(main, ["frobnicate"]).exit_code == 2


def test_schema_command_prints_the_schema() -> None:
    result = CliRunner().invoke(main, ["schema"])
    schema = json.loads(result.output)
    assert schema["$schema"].endswith("2020-12/schema")
    assert "scenes" in schema["properties"]
