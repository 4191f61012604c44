"""The lockfile: deterministic, atomic, validated on load, one writer at a time."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
from pathlib import Path

import pytest

from hailuo_pipe.errors import LockfileError, LockHeldError
from hailuo_pipe.state import journal as journals
from hailuo_pipe.state.lockfile import Entry, FileRecord, Lockfile, exclusive


def entry(**kw: object) -> Entry:
    base = dict(
        fingerprint="sha256:ab",
        provider="wavespeed",
        state="submitted",
        key="k-1",
        request={"prompt": "x"},
        job_id="job-1",
        submitted_at="2026-01-01T00:00:00Z",
    )
    base.update(kw)
    return Entry(**base)  # type: ignore[arg-type]


def test_an_entry_in_json_is_every_field_it_has_and_nothing_else() -> None:
    """`to_json` names the fields by hand (for speed): a field added to Entry and not to it
    would be lost at the next save."""
    full = entry(
        state="done",
        finished_at="2026-01-01T00:01:00Z",
        output=FileRecord("renders/s/a.mp4", "ff", 10, "pixels:00"),
        frames={"last": FileRecord("renders/s/a.last.png", "ee", 3, "pixels:01")},
        cost=0.23,
        cost_source="provider",
        seed=7,
        error="an old failure",
        scheme=2,
    )
    data = full.to_json()
    assert list(data) == [f.name for f in dataclasses.fields(Entry)]  # declaration order
    assert data == dataclasses.asdict(full)
    assert Entry.from_json("a", json.loads(json.dumps(data))) == full
    listed = entry(request=[{"taskType": "videoInference"}])  # Runware's request is a list
    assert listed.to_json()["request"] == [{"taskType": "videoInference"}]
    bare = entry(request={}).to_json()
    assert "request" not in bare
    assert "output" not in bare and "frames" not in bare and "cost" not in bare
    assert "pixels" not in FileRecord("renders/s/a.mp4", "ff", 10).to_json()


def test_round_trip_is_deterministic(tmp_path: Path) -> None:
    lock = Lockfile(tmp_path / "s.lock", "s")
    lock.scenes["b"] = entry()
    lock.scenes["a"] = entry(
        state="done",
        output=FileRecord("renders/s/a.mp4", "ff", 10),
        frames={"last": FileRecord("renders/s/a.last.png", "ee", 3)},
        cost=0.23,
        seed=7,
    )
    lock.save()
    text = lock.path.read_text()
    assert list(json.loads(text)["scenes"]) == ["a", "b"]
    again = Lockfile.load(lock.path, "s")
    assert again.scenes == lock.scenes
    again.save()
    assert lock.path.read_text() == text
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_the_lockfile_and_its_journal_are_made_as_any_file_is(tmp_path: Path, umask: int) -> None:
    """Under the umask, like a file git checks out: not 0600 for one and 0644 for the other."""
    old = os.umask(umask)
    try:
        lock = Lockfile(tmp_path / "s.lock", "s")
        lock.scenes["a"] = entry()
        lock.save()
        lock.append(journals.line("a", entry().to_json()), 1)
        with exclusive(lock.path):
            pass
    finally:
        os.umask(old)
    assert (tmp_path / ".s.lock.pid").stat().st_mode & 0o777 == 0o666 & ~umask
    assert lock.path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert lock.journal.stat().st_mode & 0o777 == 0o666 & ~umask


def test_incremental_encoding_matches_plain_json(tmp_path: Path) -> None:
    """dumps() reuses the text of unchanged entries; the bytes must be json.dumps's own."""

    def plain(lock: Lockfile) -> bytes:
        text = json.dumps(lock.to_json(), indent=2, sort_keys=True, ensure_ascii=False)
        return (text + "\n").encode()

    lock = Lockfile(tmp_path / "s.lock", "s")
    assert lock.dumps() == plain(lock)
    lock.scenes["b"] = entry(request={"prompt": 'é\n"q"', "nested": {"x": [1, 2]}})
    lock.scenes["a"] = entry()
    assert lock.dumps() == plain(lock)
    lock.scenes["a"] = entry(state="done", output=FileRecord("a.mp4", "ff", 10), cost=0.5)
    lock.cut, lock.cut_fingerprint = FileRecord("cut.mp4", "cc", 99), "sha256:cut"
    assert lock.dumps() == plain(lock)
    assert b'"state": "done"' in lock.dumps()


def test_missing_lockfile_is_empty(tmp_path: Path) -> None:
    assert Lockfile.load(tmp_path / "none.lock", "s").scenes == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"version": 9, "scenes": {}}', "version 9"),
        ('{"version": 1, "scenes": []}', "'scenes' is not an object"),
        (
            '{"version": 1, "scenes": {"a": {"fingerprint": "x", "provider": "p", "key": "k",'
            ' "state": "exploded"}}}',
            "unknown state 'exploded'",
        ),
        (
            '{"version": 1, "scenes": {"a": {"fingerprint": "x", "provider": "p", "key": "k",'
            ' "state": "submitted"}}}',
            "submitted but has no job id",
        ),
        (
            '{"version": 1, "scenes": {"a": {"fingerprint": "x", "provider": "p", "key": "k",'
            ' "state": "done", "job_id": "j"}}}',
            "done but records no output",
        ),
    ],
)
def test_corrupt_lockfile_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "s.lock"
    path.write_text(text)
    with pytest.raises(LockfileError, match=message):
        Lockfile.load(path, "s")


def _hold(path: str, ready, release) -> None:  # type: ignore[no-untyped-def]
    with exclusive(Path(path)):
        ready.set()
        release.wait(10)


def test_second_writer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.lock"
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(path), ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        with pytest.raises(LockHeldError, match=f"process {holder.pid}"), exclusive(path):
            pass
    finally:
        release.set()
        holder.join(10)
    with exclusive(path):  # free again once the holder is gone
        pass


def test_group_writer_coalesces_and_reports_failures_to_each_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a disk whose appends are slow, writes go to the writer's thread and coalesce."""
    import asyncio

    from hailuo_pipe.state import group_commit, lockfile

    monkeypatch.setattr(group_commit, "QUICK", 0.0)  # every append "slow"
    lock = Lockfile(tmp_path / "s.lock", "s")
    writes: list[int] = []  # lines appended per group commit
    real = lockfile.append_journal

    def counted(path: Path, data: bytes, *, fresh: bool = False) -> None:
        if fail:
            raise OSError(28, "No space left on device")
        real(path, data, fresh=fresh)
        writes.append(data.count(b"\n") - fresh)  # the header is no change

    monkeypatch.setattr(lockfile, "append_journal", counted)

    async def many(prefix: str) -> list[object]:
        writer = group_commit.GroupWriter(lock)
        puts = [writer.transition(f"{prefix}{i}", "resumed", entry()) for i in range(20)]
        return await asyncio.gather(*puts, return_exceptions=True)

    fail = False
    asyncio.run(many("a"))
    # everyone's change is on disk, each written once; made in one turn of the loop (twenty
    # jobs ending together), they share one write
    assert writes == [20]
    assert set(Lockfile.load(lock.path, "s").scenes) == {f"a{i}" for i in range(20)}

    fail = True
    outcomes = asyncio.run(many("b"))
    assert all(isinstance(o, LockfileError) for o in outcomes)  # each caller hears of it
    assert all("No space left on device" in str(o) for o in outcomes)
    fail = False
    asyncio.run(many("c"))  # and a later change is written, with everything before it
    assert len(Lockfile.load(lock.path, "s").scenes) == 60


def test_group_writer_asks_again_in_a_new_loop_whatever_the_old_one_left(tmp_path: Path) -> None:
    """A write asked for at the end of a turn that never ended (its loop closed first, a
    render cut short) does not keep a later loop's changes from being written."""
    import asyncio

    from hailuo_pipe.state import group_commit

    lock = Lockfile(tmp_path / "s.lock", "s")
    writer = group_commit.GroupWriter(lock)
    gone = asyncio.new_event_loop()
    gone.close()
    writer._due = gone  # as a closed loop leaves it

    async def change() -> None:
        await asyncio.wait_for(writer.transition("a", "resumed", entry()), timeout=10)

    asyncio.run(change())
    assert set(Lockfile.load(lock.path, "s").scenes) == {"a"}


def test_group_writer_appends_at_once_on_a_quick_disk_and_in_its_thread_once_one_was_slow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A quick append is made on the event loop, at the end of the turn that asked for it (a
    submit waits one turn, no thread hop); after a slow one, appends go to the thread, where
    the loop keeps running."""
    import asyncio
    import threading

    from hailuo_pipe.state import group_commit, lockfile

    lock = Lockfile(tmp_path / "s.lock", "s")
    threads: list[str] = []
    real = lockfile.append_journal

    def watched(path: Path, data: bytes, *, fresh: bool = False) -> None:
        threads.append(threading.current_thread().name)
        real(path, data, fresh=fresh)

    monkeypatch.setattr(lockfile, "append_journal", watched)

    async def one_by_one(prefix: str) -> None:
        writer = group_commit.GroupWriter(lock)
        for i in range(3):
            await writer.transition(f"{prefix}{i}", "resumed", entry())
        if prefix == "slow":
            assert not writer._quick

    asyncio.run(one_by_one("quick"))
    assert threads == ["MainThread"] * 3
    threads.clear()
    monkeypatch.setattr(group_commit, "QUICK", 0.0)
    asyncio.run(one_by_one("slow"))
    assert threads[0] == "MainThread" and all(t.startswith("lockfile") for t in threads[1:])
    assert set(Lockfile.load(lock.path, "s").scenes) == {
        f"{p}{i}" for p in ("quick", "slow") for i in range(3)
    }


def test_a_change_written_at_once_is_on_disk_in_its_own_turn_with_every_change_before_it(
    tmp_path: Path,
) -> None:
    """`at_once` (the record a submit waits for): on a quick disk the change is on disk when
    the call returns, with no turn of the loop in between, and it takes along the changes
    other tasks made and wait for; they are answered too."""
    import asyncio

    from hailuo_pipe.state import group_commit

    lock = Lockfile(tmp_path / "s.lock", "s")

    async def main() -> None:
        writer = group_commit.GroupWriter(lock)
        other = asyncio.ensure_future(writer.transition("a", "resumed", entry()))
        await asyncio.sleep(0)  # "a" is changed, its write asked for at the end of a turn
        assert not other.done()
        turns: list[int] = []
        asyncio.get_running_loop().call_soon(turns.append, 1)
        await writer.transition("b", "resumed", entry(), at_once=True)
        assert turns == []  # the loop did not turn
        parsed = journals.parse(lock.journal, lock.journal.read_bytes())
        assert parsed is not None and [c.scene for c in parsed.changes] == ["a", "b"]
        await asyncio.wait_for(other, timeout=10)  # answered, and written once
        await asyncio.sleep(0.05)  # the write asked for finds nothing left to write
        parsed = journals.parse(lock.journal, lock.journal.read_bytes())
        assert parsed is not None and len(parsed.changes) == 2

    asyncio.run(main())
    assert set(Lockfile.load(lock.path, "s").scenes) == {"a", "b"}


def test_a_change_asked_at_once_waits_its_turn_on_a_slow_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once appends are slow they go to the writer's thread, `at_once` or not: the loop is
    never held up by a slow disk, and the change is still on disk before the call returns."""
    import asyncio

    from hailuo_pipe.state import group_commit

    monkeypatch.setattr(group_commit, "QUICK", 0.0)  # every append "slow"
    lock = Lockfile(tmp_path / "s.lock", "s")

    async def main() -> None:
        writer = group_commit.GroupWriter(lock)
        await writer.transition("a", "resumed", entry())  # slow: the next ones go to the thread
        turns: list[int] = []
        asyncio.get_running_loop().call_soon(turns.append, 1)
        await writer.transition("b", "resumed", entry(), at_once=True)
        assert turns == [1]
        parsed = journals.parse(lock.journal, lock.journal.read_bytes())
        assert parsed is not None and [c.scene for c in parsed.changes] == ["a", "b"]

    asyncio.run(main())


def test_a_finished_entry_is_encoded_for_the_file_when_recorded_and_the_file_is_unchanged(
    tmp_path: Path,
) -> None:
    """The fold at a render's end encodes only what is not encoded yet: a scene's entry is
    encoded as the file will hold it once it is done (it changes no more in its render), and
    the file's bytes are json.dumps's all the same."""
    import asyncio

    from hailuo_pipe.state import group_commit

    lock = Lockfile(tmp_path / "s.lock", "s")
    done = entry(
        state="done",
        finished_at="2026-01-01T00:01:00Z",
        request={"prompt": "é\n"},
        output=FileRecord("renders/b.mp4", "ff", 10),
    )

    async def main() -> None:
        writer = group_commit.GroupWriter(lock)
        await writer.transition("a", "resumed", entry())
        await writer.transition("b", "pulled", done)

    asyncio.run(main())
    assert set(lock._texts) == {"b"}  # "a" is still running: encoded at the fold
    lock.save()
    expected = json.dumps(lock.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert lock.path.read_text(encoding="utf-8") == expected


def test_a_change_asked_at_once_that_cannot_be_written_fails_its_caller_and_is_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk under `at_once`: the submit that waits for it hears of it (so it is never
    sent), as does every change the write took along, and a later write still records them."""
    import asyncio

    from hailuo_pipe.state import group_commit, lockfile

    lock = Lockfile(tmp_path / "s.lock", "s")
    real = lockfile.append_journal
    full = True

    def fills_up(path: Path, data: bytes, *, fresh: bool = False) -> None:
        if full:
            raise OSError(28, "No space left on device")
        real(path, data, fresh=fresh)

    monkeypatch.setattr(lockfile, "append_journal", fills_up)

    async def main() -> None:
        nonlocal full
        writer = group_commit.GroupWriter(lock)
        other = asyncio.ensure_future(writer.transition("a", "resumed", entry()))
        await asyncio.sleep(0)
        with pytest.raises(LockfileError, match="No space left on device"):
            await writer.transition("b", "resumed", entry(), at_once=True)
        with pytest.raises(LockfileError, match="No space left on device"):
            await asyncio.wait_for(other, timeout=10)
        full = False
        await writer.transition("c", "resumed", entry(), at_once=True)

    asyncio.run(main())
    assert set(Lockfile.load(lock.path, "s").scenes) == {"a", "b", "c"}


def test_an_entry_encoded_ahead_and_changed_after_is_written_as_changed(tmp_path: Path) -> None:
    """A done scene's frames extracted again (`restored`) after its entry was encoded for the
    file: the file holds the new frames, not the text encoded before."""
    import asyncio

    from hailuo_pipe.state import group_commit

    lock = Lockfile(tmp_path / "s.lock", "s")
    clip = FileRecord("renders/b.mp4", "ff", 10)
    old = {"last": FileRecord("renders/b.last.png", "aa", 3, "pixels:01")}
    new = {"last": FileRecord("renders/b.last.png", "bb", 4, "pixels:02")}

    async def main() -> None:
        writer = group_commit.GroupWriter(lock)
        await writer.transition("b", "pulled", entry(state="done", output=clip, frames=old))
        await writer.transition("b", "restored", frames=new)

    asyncio.run(main())
    lock.save()
    saved = json.loads(lock.path.read_text(encoding="utf-8"))
    assert saved["scenes"]["b"]["frames"]["last"]["sha256"] == "bb"
