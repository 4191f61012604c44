"""Issue 13: validate reports every independent problem in one run, schema problems included,
and a cycle is reported at the frame reference that closes it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hailuo_pipe.validate import check

MISTAKES = """
version: 1
name: m
vars:
  place: Oslo
defaults:
  provider: runware
scenes:
  - id: a
    prompt: "{{ nope }}"
  - id: b
    prompt: schema says no
    duration: 7
  - id: c
    prompt: a missing file
    image: assets/missing.png
  - id: d
    prompt: a dangling reference
    image: {from: zzz}
  - id: e
    prompt: one half of a cycle
    image: {from: f}
  - id: f
    prompt: the other half
    image: {from: e}
  - id: c
    prompt: a duplicate beyond the provider's limits
    resolution: 1080p
    duration: 10
  - id: g
    prompt: an option that overrides the scene
    options: {duration: 10}
  - id: h
    prompt: needs the schema-refused scene, which does exist
    image: {from: b}
  - id: i
    prompt: an unknown key
    colour: red
  - id: j
    prompt: its own frame
    image: {from: j}
output: {path: x.mp4, sequence: [a, b, q]}
"""


def test_every_independent_problem_in_one_run(write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = write_spec(MISTAKES)
    _, problems = check(spec)
    found = sorted((p.line, p.message.split(":")[0].split(" (")[0]) for p in problems)
    lines = [line for line, _ in found]
    assert lines == [9, 12, 15, 18, 24, 25, 28, 31, 37, 40, 41], found
    text = "\n".join(p.message for p in problems)
    assert "duration must be 6 or 10" in text  # schema
    assert "undefined variable 'nope'" in text  # templates
    assert "scene 'zzz', which does not exist" in text  # references
    assert "Runware renders 1080p clips of 6 s, not 10 s" in text  # provider limits
    assert "image file not found" in text  # files
    assert "duplicate scene id 'c'" in text
    assert "unknown key 'colour'" in text
    assert "options.duration" in text
    assert "scene 'q', which does not exist" in text
    # made meaningless by another problem, so not reported: b and a do exist
    assert "scene 'b', which does not exist" not in text
    assert "scene 'a', which does not exist" not in text
    result = subprocess.run(
        [sys.executable, "-m", "hailuo_pipe", "validate", str(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert f"{len(problems)} problems found" in result.stderr


def test_a_cycle_is_reported_at_the_reference_that_closes_it(write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = write_spec(
        """
        version: 1
        name: c
        defaults: {provider: preview}
        scenes:
          - id: first
            prompt: starts it
            image: {from: third}
          - id: second
            prompt: middle
            image: {from: first}
          - id: third
            prompt: closes it
            end_image: {from: second}
        """
    )
    _, problems = check(spec)
    assert [(p.line, p.col, p.message) for p in problems] == [
        (10, 19, "frame references form a cycle: first -> third -> second -> first")
    ]


def test_a_cycle_is_found_beside_a_dangling_reference(write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = write_spec(
        """
        version: 1
        name: c
        defaults: {provider: preview}
        scenes:
          - {id: x, prompt: p, image: {from: y}}
          - {id: y, prompt: p, image: {from: x}}
          - {id: z, prompt: p, image: {from: nowhere}}
        """
    )
    _, problems = check(spec)
    assert sorted(p.message for p in problems) == [
        "frame references form a cycle: x -> y -> x",
        "image takes a frame from scene 'nowhere', which does not exist",
    ]


def test_every_unknown_key_of_one_mapping_is_reported(write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = write_spec(
        """
        version: 1
        name: k
        colour: red
        shade: blue
        defaults: {provider: gmicloud}
        scenes:
          - id: a
            prompt: hello there
            tint: green
            hue: 3
          - id: b
            prompt: hello there
            options: {model: other, speed: 2}
        """
    )
    _, problems = check(spec)
    found = sorted((p.line, p.message.split(";")[0]) for p in problems)
    assert found == [
        (3, "unknown key 'colour'"),
        (4, "unknown key 'shade'"),
        (9, "unknown key 'tint' in scene 'a'"),
        (10, "unknown key 'hue' in scene 'a'"),
        (13, "gmicloud: unknown key 'model' in payload"),
        (13, "gmicloud: unknown key 'speed' in payload"),
    ], found


@pytest.mark.parametrize("name_line", ["name: ../escape\n", ""])
def test_a_bad_or_missing_name_does_not_hide_the_scenes_problems(
    write_spec,  # type: ignore[no-untyped-def]
    name_line: str,
) -> None:
    spec = write_spec(
        "version: 1\n" + name_line + "defaults: {provider: preview}\n"
        "scenes:\n  - id: a\n    prompt: '{{ nope }}'\n"
    )
    _, problems = check(spec)
    text = "\n".join(p.message for p in problems)
    assert "name" in text and "undefined variable 'nope'" in text, text


def test_a_scene_with_a_template_error_still_has_its_missing_image_reported(write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = write_spec(
        "version: 1\nname: t\ndefaults: {provider: preview}\n"
        "scenes:\n  - id: a\n    prompt: '{{ nope }}'\n    image: assets/gone.png\n"
    )
    _, problems = check(spec)
    assert sorted((p.line, p.message.split(":")[0]) for p in problems) == [
        (6, "prompt"),
        (7, "image file not found"),
    ], problems
