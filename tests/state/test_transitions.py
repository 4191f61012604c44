"""The lockfile's table of transitions: every named transition from every state, legal and not.

The table is the one answer to "how may a scene's state change"; these tests read it row by row,
so a row added or loosened without thought fails here, and so does a write the render makes
that the table does not name.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hailuo_pipe.errors import LockfileError, TransitionRefused
from hailuo_pipe.state.lockfile import STATES, Entry, FileRecord, Lockfile
from hailuo_pipe.state.transitions import ANY, REQUIRED, TRANSITIONS, check, check_entry

FP, OTHER = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def entry(state: str | None, fingerprint: str = FP) -> Entry | None:
    if state is None:
        return None
    return Entry(
        fingerprint=fingerprint,
        provider="wavespeed",
        state=state,  # type: ignore[arg-type]
        key="k-1",
        request={"prompt": "x"},
        job_id="job-1" if state in ("submitted", "done") else None,
        output=FileRecord("renders/s/a.mp4", "ff", 10) if state == "done" else None,
    )


def result_of(name: str, old: Entry | None, fingerprint: str = FP) -> Entry:
    """A well-formed entry in the state `name` ends in."""
    target = TRANSITIONS[name].target or (old.state if old else "done")
    made = entry(target, fingerprint)
    assert made is not None
    return made


# The table as it must read: transition -> states it may start from (None: no entry yet).
EXPECTED: dict[str, set[str | None]] = {
    "submitting": set(ANY),
    "submitted": {"submitting", "unknown"},
    "adopted": {"submitting", "unknown"},
    "resumed": set(ANY),
    "parked": set(ANY),
    "refused": {"submitting"},
    "failed": {"submitted"},
    "finished": {"submitted", "done"},
    "rendered_locally": set(ANY),
    "pulled": set(ANY),
    "restored": {"done"},
    "migrated": {"submitted", "done"},
}
CASES = [(name, before) for name in TRANSITIONS for before in sorted(ANY, key=str)]


def test_the_table_is_the_one_expected() -> None:
    assert {name: set(move.sources) for name, move in TRANSITIONS.items()} == EXPECTED


@pytest.mark.parametrize(("name", "before"), CASES)
def test_each_transition_from_each_state(name: str, before: str | None) -> None:
    """Legal from the states the table names, refused from every other; a new submission for
    a clip that may be paid for already is refused unless asked for again."""
    old = entry(before, OTHER)  # another clip: the repay guard does not apply
    new = result_of(name, old)
    if before in EXPECTED[name]:
        check("s", name, old, new)
    else:
        with pytest.raises(TransitionRefused, match="cannot go from"):
            check("s", name, old, new)


@pytest.mark.parametrize("before", ["submitting", "submitted", "unknown", "done"])
def test_a_second_submission_of_the_same_clip_needs_again(before: str) -> None:
    old = entry(before)
    with pytest.raises(TransitionRefused, match="pay for it twice"):
        check("s", "submitting", old, result_of("submitting", old))
    check("s", "submitting", old, result_of("submitting", old), again=True)  # --force, --resubmit


def test_a_failed_clip_may_be_submitted_again_without_asking() -> None:
    old = entry("failed")
    check("s", "submitting", old, result_of("submitting", old))


@pytest.mark.parametrize("before", ["submitted", "done"])
def test_parking_never_forgets_a_known_job_of_the_same_clip(before: str) -> None:
    old = entry(before)
    with pytest.raises(TransitionRefused, match="forget its job"):
        check("s", "parked", old, result_of("parked", old))
    check("s", "parked", entry(before, OTHER), result_of("parked", old))  # another clip's


@pytest.mark.parametrize("name", sorted(TRANSITIONS))
def test_a_transition_must_end_in_its_state(name: str) -> None:
    old = entry(sorted(EXPECTED[name], key=str)[-1], OTHER)
    target = TRANSITIONS[name].target or (old.state if old else None)
    wrong = next(s for s in STATES if s != target)
    with pytest.raises(TransitionRefused, match="must end"):
        check("s", name, old, entry(wrong))  # type: ignore[arg-type]


def test_an_unnamed_transition_is_refused() -> None:
    with pytest.raises(TransitionRefused, match="not a lockfile transition"):
        check("s", "teleported", None, result_of("pulled", None))


@pytest.mark.parametrize(("state", "field"), [(s, f) for s, fs in REQUIRED.items() for f in fs])
def test_an_entry_missing_what_its_state_needs_is_refused(state: str, field: str) -> None:
    whole = entry(state)
    assert whole is not None
    check_entry("s", whole)
    broken = Entry(**{**whole.__dict__, field: None if field != "key" else ""})
    with pytest.raises(TransitionRefused, match=f"is {state} but"):
        check_entry("s", broken)


@pytest.mark.parametrize(("state", "field"), [("submitted", "job_id"), ("done", "output")])
def test_the_same_table_refuses_a_hand_edited_lockfile(
    state: str, field: str, tmp_path: Path
) -> None:
    good = entry(state)
    assert good is not None
    data = good.to_json()
    del data[field]
    path = tmp_path / "s.lock"
    path.write_text(json.dumps({"version": 1, "storyboard": "s", "scenes": {"a": data}}))
    with pytest.raises(LockfileError, match=f"is {state} but"):
        Lockfile.load(path, "s")


def test_a_lockfile_write_that_breaks_the_table_changes_nothing(tmp_path: Path) -> None:
    lock = Lockfile(tmp_path / "s.lock", "s")
    done = entry("done")
    assert done is not None
    lock.scenes["a"] = done
    with pytest.raises(TransitionRefused):
        lock.transition("a", "submitting", entry("submitting"))  # the same clip, not asked for
    assert lock.scenes["a"] is done


@pytest.mark.parametrize("field", ["frames", "output"])
def test_a_lockfile_whose_records_are_not_objects_is_refused_where_it_is_wrong(
    field: str, tmp_path: Path
) -> None:
    done = entry("done")
    assert done is not None
    data = {**done.to_json(), field: ["renders/s/a.mp4"]}
    path = tmp_path / "s.lock"
    path.write_text(json.dumps({"version": 1, "storyboard": "s", "scenes": {"a": data}}))
    with pytest.raises(LockfileError, match="scene 'a' has frames or an output"):
        Lockfile.load(path, "s")
