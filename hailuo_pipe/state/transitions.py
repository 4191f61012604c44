"""The lockfile's named transitions: the one table that says how a scene's state may change.

A scene's entry moves through
    submitting -> submitted -> done | failed        (and -> unknown when a submit's answer is lost)
and every write a render makes is one of the transitions below, checked against this table
before it reaches the disk. So "what can happen to a `submitting` scene" is answered by reading
one table, and a bug that would record a second paid job for a scene whose job is still running,
or a clip as done without its file, is refused here instead of being written.

Each transition names the states it may start from (None: the scene has no entry yet) and the
state it ends in (None: the state is kept). `REQUIRED` lists what an entry must hold in each
state; it is checked after every transition and on every load, so a hand-edited lockfile that
says `done` without an output file is refused as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hailuo_pipe.errors import TransitionRefused

if TYPE_CHECKING:
    from hailuo_pipe.state.entry import Entry, State

ANY: frozenset[str | None] = frozenset(
    {None, "submitting", "submitted", "unknown", "done", "failed"}
)
# a submission that has made, or may have made, a paid job: a new one for the same fingerprint
# pays twice unless the user asked for it (--force, --resubmit) or it costs nothing (preview)
MAY_HAVE_PAID: frozenset[str | None] = frozenset({"submitting", "submitted", "unknown", "done"})


@dataclass(frozen=True)
class Move:
    sources: frozenset[str | None]
    target: State | None  # None: the entry keeps its state
    why: str


TRANSITIONS: Mapping[str, Move] = {
    "submitting": Move(ANY, "submitting", "a new key is recorded before the request is sent"),
    "submitted": Move(
        frozenset({"submitting", "unknown"}),
        "submitted",
        "the provider answered with a job id (a first answer, a resend, or a listing found it)",
    ),
    "adopted": Move(
        frozenset({"submitting", "unknown"}), "submitted", "--adopt: the user found the job"
    ),
    "resumed": Move(ANY, "submitted", "another machine's job, taken over with its cache lease"),
    "parked": Move(
        ANY, "unknown", "a job may exist whose id we never learnt (lost answer, odd id, a lease's)"
    ),
    "refused": Move(frozenset({"submitting"}), "failed", "the provider refused the request"),
    "failed": Move(frozenset({"submitted"}), "failed", "the job ended without a clip"),
    "finished": Move(
        frozenset({"submitted", "done"}),
        "done",
        "the job's clip is downloaded, checked and hashed (a done one's again, if it went)",
    ),
    "rendered_locally": Move(ANY, "done", "the preview provider made the clip on this machine"),
    "pulled": Move(ANY, "done", "the clip came from the shared cache"),
    "restored": Move(frozenset({"done"}), None, "its frames were extracted again from its clip"),
    "migrated": Move(
        frozenset({"submitted", "done"}), None, "an older fingerprint scheme's entry, renamed"
    ),
}

# what an entry must hold in each state
REQUIRED: Mapping[str, tuple[str, ...]] = {
    "submitting": ("key",),
    "submitted": ("key", "job_id"),
    "unknown": ("key",),
    "done": ("key", "job_id", "output"),
    "failed": ("key",),
}


def check(scene_id: str, name: str, old: Entry | None, new: Entry, *, again: bool = False) -> None:
    """Refuse a write that is not the transition `name` from `old`.

    `again`: the user asked for (or the provider does not charge for) a new job for a
    fingerprint that may already have one."""
    move = TRANSITIONS.get(name)
    if move is None:
        raise TransitionRefused(f"{scene_id}: {name!r} is not a lockfile transition")
    before = old.state if old is not None else None
    if before not in move.sources:
        raise TransitionRefused(
            f"{scene_id}: cannot go from {before or 'no entry'} by {name!r} "
            f"(allowed from {', '.join(sorted(str(s) for s in move.sources))})"
        )
    expected = move.target if move.target is not None else before
    if new.state != expected:
        raise TransitionRefused(f"{scene_id}: {name!r} must end {expected}, not {new.state}")
    if (
        name == "submitting"
        and old is not None
        and old.state in MAY_HAVE_PAID
        and old.fingerprint == new.fingerprint
        and not again
    ):
        raise TransitionRefused(
            f"{scene_id}: a new submission for a clip already {old.state} (job "
            f"{old.job_id or 'unknown'}) would pay for it twice"
        )
    if (
        name == "parked"
        and old is not None
        and old.state in ("submitted", "done")
        and old.fingerprint == new.fingerprint
    ):
        raise TransitionRefused(
            f"{scene_id}: parking a clip already {old.state} would forget its job {old.job_id}"
        )
    check_entry(scene_id, new)


def check_entry(scene_id: str, entry: Entry) -> None:
    """What an entry must hold in its state: on every transition and on every load."""
    for name in REQUIRED.get(entry.state, ()):
        if not getattr(entry, name):
            raise TransitionRefused(
                f"scene {scene_id!r} is {entry.state} but {_MISSING.get(name, f'has no {name}')}"
            )


_MISSING = {"job_id": "has no job id", "output": "records no output file"}
