"""`decide()`, the one place a scene's action is chosen, read as a table.

Each row: what the lockfile says of the scene, what is on disk, what the user asked for, which
kind of provider; and the action (and whether it pays). The precedence it pins down: no entry,
then --force, then a changed fingerprint, then the entry's state; a lost submission is resent
only where the provider dedupes, looked for where the provider lists jobs, and blocked
elsewhere unless --resubmit.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hailuo_pipe.plan import SPENDING, decide
from hailuo_pipe.state.lockfile import Entry, FileRecord
from hailuo_pipe.storyboard.images import sha256_file
from hailuo_pipe.validate import load_storyboard

SPEC = """
version: 1
name: t
scenes:
  - id: s
    provider: {provider}
    prompt: a lighthouse at dusk
    image: assets/a.png
    duration: 6
    resolution: 768p
"""

# provider kinds: wavespeed submits once (no key dedupe, no job list), runware dedupes a
# resent key, gmicloud lists its jobs, preview renders on this machine for free
ROWS: list[tuple[str, str, dict[str, Any], str]] = [
    # (provider, lockfile entry, what else holds, expected action)
    ("wavespeed", "none", {}, "create"),
    ("wavespeed", "none", {"forced": True}, "create"),
    ("wavespeed", "done", {}, "reuse"),
    ("wavespeed", "done", {"forced": True}, "replace"),
    ("wavespeed", "done", {"changed": True}, "replace"),
    ("wavespeed", "done", {"other_provider": True}, "replace"),
    ("wavespeed", "done", {"clip_missing": True}, "download"),
    ("preview", "done", {"clip_missing": True}, "replace"),
    ("wavespeed", "done", {"frames_missing": True}, "restore"),
    ("wavespeed", "submitted", {}, "poll"),
    ("wavespeed", "submitted", {"forced": True}, "replace"),
    ("wavespeed", "submitted", {"changed": True}, "replace"),
    ("wavespeed", "failed", {}, "retry"),
    ("wavespeed", "failed", {"changed": True}, "replace"),
    ("wavespeed", "submitting", {}, "blocked"),
    ("wavespeed", "unknown", {}, "blocked"),
    ("wavespeed", "unknown", {"resubmit": True}, "create"),
    ("runware", "submitting", {}, "resend"),
    ("runware", "unknown", {}, "resend"),
    ("gmicloud", "submitting", {}, "reconcile"),
    ("gmicloud", "unknown", {}, "reconcile"),
    ("gmicloud", "unknown", {"resubmit": True}, "create"),
    ("gmicloud", "submitted", {}, "poll"),
]


def _entry(state: str, fingerprint: str, provider: str, base: Path) -> Entry:
    clip = base / "renders/t/s.mp4"
    clip.parent.mkdir(parents=True, exist_ok=True)
    clip.write_bytes(b"clip")
    frames = {}
    for which in ("first", "last"):
        png = base / f"renders/t/s.{which}.png"
        png.write_bytes(which.encode())
        frames[which] = FileRecord(
            png.relative_to(base).as_posix(), sha256_file(png), png.stat().st_size
        )
    done = state == "done"
    return Entry(
        fingerprint=fingerprint,
        provider=provider,
        state=state,  # type: ignore[arg-type]
        key="k-1",
        request={"prompt": "a lighthouse at dusk"},
        job_id="job-1" if state in ("submitted", "done") else None,
        output=FileRecord("renders/t/s.mp4", sha256_file(clip), 4) if done else None,
        frames=frames if done else {},
        scheme=2,
    )


@pytest.mark.parametrize(("provider", "state", "holds", "expected"), ROWS)
def test_decide_chooses_by_precedence(
    provider: str, state: str, holds: dict[str, Any], expected: str, write_spec: Any
) -> None:
    spec = write_spec(SPEC.format(provider=provider))
    base = spec.parent
    (scene,) = load_storyboard(spec).scenes
    fresh = decide(scene, None, {}, base, False, False)
    assert fresh.fingerprint is not None
    entry = None
    if state != "none":
        fingerprint = "sha256:" + "0" * 64 if holds.get("changed") else fresh.fingerprint
        entry = _entry(state, fingerprint, provider, base)
        if holds.get("other_provider"):
            entry = replace(entry, provider="minimax")
        if holds.get("clip_missing"):
            (base / "renders/t/s.mp4").unlink()
        if holds.get("frames_missing"):
            (base / "renders/t/s.last.png").unlink()
    step = decide(scene, entry, {}, base, holds.get("forced", False), holds.get("resubmit", False))
    assert step.action == expected, step.reason
    assert (step.price > 0) == (expected in SPENDING | {"reconcile"} and provider != "preview")


def test_every_action_is_in_the_table() -> None:
    from hailuo_pipe.plan import ACTIONS

    assert {row[3] for row in ROWS} == set(ACTIONS) - {"pull"}  # pull: tests/cache
