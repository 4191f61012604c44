"""The lockfile beside the spec: what was submitted, what finished, and what it produced.

It is committed to git, so it is deterministic JSON (sorted keys, one scene per key, no volatile
fields but timestamps of real state changes) and it never holds a secret. A render records each
state change durably before going on, as one line appended to the journal beside it
(journal.py), and folds the journal into the file (an atomic rewrite: temp file, fsync, rename)
when it releases the spec's lock; the next writer to load it does so after a crash. A process-
wide lock makes sure two renders of one spec never interleave.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hailuo_pipe.errors import AdoptRefused, LockfileError
from hailuo_pipe.paths import PathRefused, escape, read_regular
from hailuo_pipe.state import journal as journals
from hailuo_pipe.state import speclock, transitions
from hailuo_pipe.state.entry import (
    JOB_ID,
    PARKED,
    STATES,
    Entry,
    FileRecord,
    State,
    _file_record,
    odd_job_id,
)
from hailuo_pipe.state.files import atomic_write, iso, now
from hailuo_pipe.state.journal import append as append_journal
from hailuo_pipe.state.speclock import exclusive

# the lockfile's public face: what a scene's record is, and the lock its writers hold
__all__ = [
    "JOB_ID",
    "PARKED",
    "STATES",
    "Entry",
    "FileRecord",
    "Lockfile",
    "State",
    "atomic_write",
    "exclusive",
    "iso",
    "now",
    "odd_job_id",
]

FORMAT_VERSION = 1
_CONSISTENT_TRIES = 5
# far above what 10,000 scenes record, far below what a mistaken /dev/zero would fill memory with
MAX_LOCKFILE_BYTES = 256 * 1024 * 1024
@dataclass
class Lockfile:
    path: Path
    storyboard: str
    scenes: dict[str, Entry] = field(default_factory=dict)
    cut: FileRecord | None = None
    cut_fingerprint: str | None = None
    # scene -> (entry, its JSON text): only changed entries are encoded again when the file is
    # rewritten (json's indenting encoder is pure Python)
    _texts: dict[str, tuple[Entry, str]] = field(default_factory=dict, repr=False, compare=False)
    # changes in the journal beside the file that the file does not hold yet
    _journaled: int = field(default=0, repr=False, compare=False)
    # scenes a GroupWriter changed in memory whose change is in no file yet, in order
    _unwritten: dict[str, None] = field(default_factory=dict, repr=False, compare=False)
    # sha256 of the file on disk (None: no file), the base a journal begun now names; None
    # in `_base_known` until needed, as reading it costs 25 ms at 10,000 scenes
    _base: str | None = field(default=None, repr=False, compare=False)
    _base_known: bool = field(default=False, repr=False, compare=False)
    # journal appends (the writer thread) and rewrites (a cut's thread) never interleave
    _io: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def journal(self) -> Path:
        return journals.journal_path(self.path)

    @classmethod
    def load(cls, path: Path, storyboard: str) -> Lockfile:
        """The lockfile with its journal's changes replayed: an empty one when neither exists;
        LockfileError when either exists but is not valid.

        Loaded by the holder of the spec's lock (`exclusive`), a journal is folded into the
        file now and again when the lock is released; anyone else (plan, status) replays it in
        memory and leaves both files as they are."""
        held = speclock.held(path)
        for _ in range(_CONSISTENT_TRIES):
            seen = _identity(path)
            raw = _read_lockfile(path)
            journal = _read_journal(journals.journal_path(path))
            # a writer may have folded the journal in while we read: then read both again, or
            # an old file with no journal, or a new file with an old journal, would be mixed
            if held is not None or _identity(path) == seen:
                break
        lock = cls(path, storyboard) if raw is None else cls._parse(path, storyboard, raw)
        if journal is not None:
            lock._replay(journal, raw)
        if held is not None:
            held.append(lock)
            if journal is not None:
                lock.compact()
        return lock

    @classmethod
    def _parse(cls, path: Path, storyboard: str, raw: bytes) -> Lockfile:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise LockfileError(f"{path}: cannot read the lockfile: {err}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise LockfileError(
                f"{path}:{err.lineno}:{err.colno}: the lockfile is not valid "
                f"JSON ({err.msg}); restore it from git, or delete it to "
                "forget every recorded job"
            ) from None
        try:
            if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
                raise LockfileError(
                    f"lockfile version {data.get('version')!r} is not {FORMAT_VERSION}"
                    if isinstance(data, dict)
                    else "the lockfile is not a JSON object"
                )
            scenes = data.get("scenes", {})
            if not isinstance(scenes, dict):
                raise LockfileError("'scenes' is not an object")
            lock = cls(
                path, storyboard, {sid: Entry.from_json(sid, e) for sid, e in scenes.items()}
            )
            if data.get("cut"):
                lock.cut = _file_record(data["cut"]["output"], "the cut")
                lock.cut_fingerprint = data["cut"]["fingerprint"]
        except LockfileError as err:
            raise LockfileError(
                f"{path}: {err}; restore it from git or fix it by hand — "
                "nothing is rendered until it is valid"
            ) from None
        except (KeyError, TypeError) as err:
            raise LockfileError(f"{path}: the cut record is malformed ({err})") from None
        return lock

    def _replay(self, data: bytes, raw: bytes | None) -> None:
        """Apply the journal's changes, checked as the file's entries are; a journal that does
        not extend this file is stale (see journal.py) and ignored."""
        parsed = journals.parse(self.journal, data)
        if parsed is None:
            return
        base = journals.digest(raw) if raw is not None else None
        self._base, self._base_known = base, True
        if parsed.base != base:
            return
        for change in parsed.changes:
            try:
                entry = Entry.from_json(change.scene, change.entry)
            except LockfileError as err:
                raise journals.located(self.journal, change.lineno, str(err)) from None
            except (KeyError, TypeError, ValueError, AttributeError) as err:
                raise journals.located(
                    self.journal, change.lineno, f"scene {change.scene!r} is malformed ({err})"
                ) from None
            self.scenes[change.scene] = entry
        self._journaled = len(parsed.changes)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "storyboard": self.storyboard,
            "scenes": {sid: self.scenes[sid].to_json() for sid in sorted(self.scenes)},
        }
        if self.cut is not None:
            data["cut"] = self._cut_json(self.cut)
        return data

    def _cut_json(self, cut: FileRecord) -> dict[str, Any]:
        return {"fingerprint": self.cut_fingerprint, "output": asdict(cut)}

    def dumps(self) -> bytes:
        """The file's bytes: `json.dumps(self.to_json(), indent=2, sort_keys=True)`, assembled
        from cached entry texts (keys in sorted order: cut, scenes, storyboard, version)."""
        items = []
        if self.cut is not None:
            items.append('  "cut": ' + _nest(_dumps(self._cut_json(self.cut)), 1))
        scenes = [
            f"    {_dumps(sid)}: {_nest(self._entry_text(sid), 2)}" for sid in sorted(self.scenes)
        ]
        items.append('  "scenes": ' + ("{\n" + ",\n".join(scenes) + "\n  }" if scenes else "{}"))
        items.append(f'  "storyboard": {_dumps(self.storyboard)}')
        items.append(f'  "version": {FORMAT_VERSION}')
        return ("{\n" + ",\n".join(items) + "\n}\n").encode("utf-8")

    def encode_ahead(self, scene_id: str) -> None:
        """Encode a scene's entry as the file will hold it, now rather than when the journal
        is folded in: a finished scene's entry changes no more in its render, and encoding
        every entry at the fold (pure-Python JSON, for the indent) took most of the 80 ms a
        1,000-scene render spent after its last frame (bench/README.md)."""
        self._entry_text(scene_id)

    def _entry_text(self, scene_id: str) -> str:
        entry = self.scenes[scene_id]
        cached = self._texts.get(scene_id)
        if cached is None or cached[0] is not entry:
            cached = (entry, _dumps(entry.to_json()))
            self._texts[scene_id] = cached
        return cached[1]

    def save(self) -> None:
        """Rewrite the file with everything in memory, and drop the journal it now holds."""
        with self._io:
            data = self.dumps()
            write_lockfile(self.path, data)
            self._base, self._base_known = journals.digest(data), True
            self._journaled = 0
            self._unwritten.clear()
            # a journal left by a failed removal names the old file as its base: stale, ignored
            with contextlib.suppress(OSError):
                journals.remove(self.journal)

    def compact(self) -> None:
        """Fold the journal into the file (atomic rewrite, then the journal removed); only a
        stale or empty journal is just removed."""
        if self._journaled:
            self.save()
        else:
            with self._io, contextlib.suppress(OSError):
                journals.remove(self.journal)

    def append(self, lines: bytes, count: int, *, wait: bool = True) -> bool:
        """Append `count` changes' lines to the journal, durably (a group commit). Not `wait`:
        only if no rewrite holds the file now; returns whether it appended."""
        if not self._io.acquire(blocking=wait):
            return False
        try:
            fresh = not self._journaled
            if fresh:  # begun anew: any journal there is already folded in, or stale
                lines = journals.header(self._base_digest()) + lines
            try:
                append_journal(self.journal, lines, fresh=fresh)
            except OSError as err:
                raise LockfileError(
                    f"{self.journal}: cannot write the lockfile's journal "
                    f"({err.strerror or err}); what it recorded so far is kept. Free some space "
                    "or make the folder writable, then run again"
                ) from None
            self._journaled += count
            return True
        finally:
            self._io.release()

    def _base_digest(self) -> str | None:
        if not self._base_known:
            raw = _read_lockfile(self.path)
            self._base = journals.digest(raw) if raw is not None else None
            self._base_known = True
        return self._base

    def transition(
        self,
        scene_id: str,
        name: str,
        entry: Entry | None = None,
        *,
        again: bool = False,
        **changes: Any,
    ) -> Entry:
        """Change one scene's entry (in memory) by the named transition: `entry` replaces it,
        or `changes` are made to it; `transitions.check` refuses what the table does not allow.
        `again`: a new job for a fingerprint that may have one was asked for (see `check`)."""
        old = self.scenes.get(scene_id)
        if entry is None:
            if old is None:
                raise LockfileError(f"{scene_id}: no entry to change by {name!r}")
            entry = replace(old, **changes)
        elif changes:
            entry = replace(entry, **changes)
        transitions.check(scene_id, name, old, entry, again=again)
        self.scenes[scene_id] = entry
        return entry

    def adopt(self, jobs: Mapping[str, str]) -> None:
        """Record jobs the user found at their provider for scenes whose submission's answer
        was lost, so the next render polls them instead of paying for a new one (in memory;
        `save` writes it)."""
        for scene_id, job_id in jobs.items():
            if not JOB_ID.fullmatch(job_id):
                raise AdoptRefused(
                    f"--adopt {scene_id}={job_id!r}: not a job id (letters, digits and . _ : -)"
                )
            entry = self.scenes.get(scene_id)
            if entry is None or entry.state not in PARKED:
                state = f"is {entry.state}" if entry else "has never been submitted"
                raise AdoptRefused(
                    f"--adopt {scene_id}={job_id}: {scene_id} {state}; only a scene whose "
                    f"submission's fate is unknown ({' or '.join(PARKED)}) can adopt a job"
                )
            self.transition(scene_id, "adopted", state="submitted", job_id=job_id, error=None)


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def _nest(text: str, depth: int) -> str:
    """JSON text indented as if it sat `depth` levels deep in an indent=2 document."""
    return text.replace("\n", "\n" + "  " * depth)


def write_lockfile(path: Path, data: bytes) -> None:
    """`atomic_write`, with a full disk or a read-only folder reported as a LockfileError."""
    try:
        atomic_write(path, data)
    except OSError as err:
        # the rename never happened, so the file on disk is still its last complete version
        raise LockfileError(
            f"{path}: cannot write the lockfile ({err.strerror or err}); it keeps its last "
            "complete state. Free some space or make the folder writable, then run again"
        ) from None


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _read_lockfile(path: Path) -> bytes | None:
    """The lockfile's bytes, None when there is none; refused when it is a symlink out of the
    project, a special file or far too large."""
    # a dangling link is not "no lockfile": taking it as one would pay for every scene again
    why = escape(path.parent, Path(path.name))
    if why is not None:
        raise LockfileError(
            f"{path}: the lockfile {why}; replace it with the real lockfile (restore it "
            "from git) — nothing is rendered until then"
        )
    try:
        return read_regular(path, MAX_LOCKFILE_BYTES, "lockfile")
    except FileNotFoundError:
        return None
    except PathRefused as err:
        raise LockfileError(f"{err}; nothing is rendered until it is fixed") from None
    except OSError as err:
        raise LockfileError(f"{path}: cannot read the lockfile: {err}") from None


def _read_journal(path: Path) -> bytes | None:
    """The journal's bytes, None when there is none, with the lockfile's own refusals."""
    why = escape(path.parent, Path(path.name))
    if why is not None:
        raise LockfileError(
            f"{path}: the lockfile's journal {why}; delete it (it only holds what an "
            "interrupted render recorded) — nothing is rendered until then"
        )
    try:
        return read_regular(path, MAX_LOCKFILE_BYTES, "lockfile's journal")
    except FileNotFoundError:
        return None
    except PathRefused as err:
        raise LockfileError(f"{err}; nothing is rendered until it is fixed") from None
    except OSError as err:
        raise LockfileError(f"{path}: cannot read the lockfile's journal: {err}") from None


def pending_digest(path: Path, storyboard: str) -> str | None:
    """sha256 of the lockfile a writer will fold `path`'s journal into, or None when there is
    no journal to fold in (the file's own bytes are then what a writer finds): what a saved plan
    records, since the render that applies it compacts the journal before checking."""
    if not journals.exists(journals.journal_path(path)):
        return None
    lock = Lockfile.load(path, storyboard)
    return journals.digest(lock.dumps()) if lock._journaled else None
