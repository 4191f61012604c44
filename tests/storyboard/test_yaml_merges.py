"""Errors in values a `<<: *anchor` merge brought into a scene: at that scene's `<<`, named."""

from __future__ import annotations

from typing import Any

from hailuo_pipe.validate import check

MERGED = """
version: 1
name: merged
defaults: {provider: preview}
scenes:
  - &base
    id: a
    duration: 7
    prompt: "{{ nope }}"
  - <<: *base
    id: b
  - <<: *base
    id: c
    duration: 6
    prompt: fine
"""


def test_a_merged_error_names_the_scene_and_points_at_its_merge_key(write_spec: Any) -> None:
    spec = write_spec(MERGED)
    _, problems = check(spec)
    lines = [(p.line, p.message) for p in problems]
    # the anchor's own scene: at its own lines, as before
    assert any(line == 7 and "duration" in msg and "scene" not in msg for line, msg in lines)
    # b took the mistake by the merge at line 9: at b's `<<`, naming b and the anchor's line
    assert (9, "scene b: duration must be 6 or 10 (seconds) (merged by << from line 7)") in lines


def test_a_merged_template_error_names_the_scene_too(write_spec: Any) -> None:
    spec = write_spec(MERGED.replace("duration: 7", "duration: 10"))
    _, problems = check(spec)
    at_b = [p.message for p in problems if p.line == 9]
    assert len(at_b) == 1 and at_b[0].startswith("scene b: prompt: undefined variable 'nope'")
    assert at_b[0].endswith("(merged by << from line 8)")


def test_a_scene_that_overrides_a_merged_key_is_not_blamed_for_it(write_spec: Any) -> None:
    spec = write_spec(MERGED)
    _, problems = check(spec)
    # c writes its own duration and prompt: nothing at its `<<` (line 11)
    assert [p for p in problems if p.line in (11, 12, 13, 14)] == []
