"""`hailuo-pipe cache push` over a lockfile (`sync.push_lockfile`): only done scenes whose files
are as recorded are pushed, a second push sends nothing, and meta.json carries the request.
The commands end to end (ls, push, pull, gc on S3 and a folder) are in tests/cache/."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from hailuo_pipe.cache import Cache, open_cache
from hailuo_pipe.state.lockfile import Entry, FileRecord, Lockfile
from hailuo_pipe.sync import push_lockfile


def _fp(scene_id: str) -> str:
    return "sha256:" + hashlib.sha256(f"scene-{scene_id}".encode()).hexdigest()


def _record(path: Path, base: Path) -> FileRecord:
    data = path.read_bytes()
    return FileRecord(
        path.relative_to(base).as_posix(), hashlib.sha256(data).hexdigest(), len(data)
    )


def _working_copy(base: Path, scene_ids: tuple[str, ...]) -> Lockfile:
    """A lockfile of done scenes (a clip and a last frame each) and their files."""
    renders = base / "renders"
    renders.mkdir(parents=True)
    lock = Lockfile(base / "story.lock", "story")
    for sid in scene_ids:
        clip, png = renders / f"{sid}.mp4", renders / f"{sid}.last.png"
        clip.write_bytes(os.urandom(5000))
        png.write_bytes(os.urandom(700))
        lock.scenes[sid] = Entry(
            fingerprint=_fp(sid),
            provider="wavespeed",
            state="done",
            key="k",
            request={"prompt": sid},
            job_id=f"job-{sid}",
            output=_record(clip, base),
            frames={"last": _record(png, base)},
            cost=0.23,
        )
    return lock


def _meta(cache: Cache, scene_id: str) -> dict:  # type: ignore[type-arg]
    got = cache.store.get(f"clips/{_fp(scene_id).split(':')[1]}/meta.json")
    assert got is not None
    return json.loads(got[0])  # type: ignore[no-any-return]


def test_push_sends_each_done_scene_once_with_its_request(tmp_path: Path) -> None:
    base = tmp_path / "board"
    lock = _working_copy(base, ("a", "b"))
    cache = open_cache(str(tmp_path / "cache"))
    first = push_lockfile(base, lock, cache, {"a", "b"})
    assert {(o.scene_id, o.status) for o in first} == {("a", "pushed"), ("b", "pushed")}
    assert {o.status for o in push_lockfile(base, lock, cache, {"a", "b"})} == {"present"}
    meta = _meta(cache, "a")
    assert (meta["request"], meta["job_id"], meta["provider"]) == (
        {"prompt": "a"},
        "job-a",
        "wavespeed",
    )
    assert sorted(meta["files"]) == ["clip", "last"]


def test_push_leaves_out_scenes_not_asked_for_and_not_done(tmp_path: Path) -> None:
    base = tmp_path / "board"
    lock = _working_copy(base, ("a", "b", "c"))
    lock.scenes["c"] = Entry(_fp("c"), "wavespeed", "submitted", "k", {"prompt": "c"}, "job-c")
    cache = open_cache(str(tmp_path / "cache"))
    assert [o.scene_id for o in push_lockfile(base, lock, cache, {"a", "c"})] == ["a"]
    assert cache.lookup(_fp("b")) is None and cache.lookup(_fp("c")) is None


def test_a_file_missing_or_changed_since_it_was_recorded_is_never_pushed(tmp_path: Path) -> None:
    base = tmp_path / "board"
    lock = _working_copy(base, ("gone", "edited"))
    (base / "renders" / "gone.mp4").unlink()
    (base / "renders" / "edited.last.png").write_bytes(b"painted over")
    cache = open_cache(str(tmp_path / "cache"))
    outcomes = {o.scene_id: o for o in push_lockfile(base, lock, cache, {"gone", "edited"})}
    assert (outcomes["gone"].status, outcomes["gone"].detail) == ("missing", "renders/gone.mp4")
    assert outcomes["edited"].status == "differs"
    assert outcomes["edited"].detail == "renders/edited.last.png changed locally"
    assert cache.ls() == []
