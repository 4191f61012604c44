"""The lockfile's journal: changes appended durably, replayed on load, folded into the lockfile
by whoever holds the spec's lock, crash-safe at any byte, and refused with a located error when
a hand (or an attacker) wrote what no crash could."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hailuo_pipe.errors import LockfileError
from hailuo_pipe.state import journal as journals
from hailuo_pipe.state import lockfile
from hailuo_pipe.state.group_commit import GroupWriter
from hailuo_pipe.state.lockfile import Entry, FileRecord, Lockfile, exclusive
from hailuo_pipe.state.transitions import TRANSITIONS


def entry(state: str = "submitted", job: str = "job-1", **kw: object) -> Entry:
    base: dict[str, object] = dict(
        fingerprint="sha256:ab",
        provider="wavespeed",
        state=state,
        key="k-1",
        request={"prompt": "x"},
        job_id=job,
        submitted_at="2026-01-01T00:00:00Z",
    )
    if state == "done":
        base["output"] = FileRecord("renders/s/a.mp4", "ff", 10)
    base.update(kw)
    return Entry(**base)  # type: ignore[arg-type]


def legal(lock: Lockfile, scene: str, e: Entry) -> str:
    """A transition the table allows from the scene's state to `e`'s (these tests are about
    how changes reach the disk, not about which changes are allowed)."""
    old = lock.scenes.get(scene)
    before = old.state if old else None
    return next(
        name
        for name, move in TRANSITIONS.items()
        if before in move.sources and (move.target or before) == e.state
    )


def put_all(lock: Lockfile, changes: list[tuple[str, Entry]]) -> None:
    """Record changes one group commit each, as a render's scenes do."""

    async def run() -> None:
        writer = GroupWriter(lock)
        for scene, e in changes:
            await writer.transition(scene, legal(lock, scene, e), e, again=True)

    asyncio.run(run())


def put_now(lock: Lockfile, scene: str, e: Entry) -> None:
    """A change written by rewriting the whole file, as `cache pull` or `--adopt` do."""
    lock.transition(scene, legal(lock, scene, e), e, again=True)
    lock.save()


def plain(lock: Lockfile) -> bytes:
    text = json.dumps(lock.to_json(), indent=2, sort_keys=True, ensure_ascii=False)
    return (text + "\n").encode()


@pytest.fixture
def base_lock(tmp_path: Path) -> Lockfile:
    """A committed lockfile with one done scene, as a rerun finds it."""
    lock = Lockfile(tmp_path / "s.lock", "s")
    put_now(lock, "a", entry("done"))
    return lock


def test_a_group_commit_appends_the_changes_and_leaves_the_lockfile_as_it_was(
    base_lock: Lockfile,
) -> None:
    before = base_lock.path.read_bytes()
    put_all(base_lock, [("b", entry("submitting", job=None)), ("b", entry()), ("c", entry())])
    assert base_lock.path.read_bytes() == before  # nothing rewritten per change
    lines = base_lock.journal.read_bytes().splitlines()
    assert len(lines) == 4  # the header, then one line per change
    assert json.loads(lines[0]) == {"base": journals.digest(before), "journal": 1}
    again = Lockfile.load(base_lock.path, "s")
    assert again.scenes == base_lock.scenes
    assert again.scenes["b"].state == "submitted"


def test_a_reader_without_the_lock_sees_the_journal_and_leaves_both_files(
    base_lock: Lockfile,
) -> None:
    put_all(base_lock, [("b", entry())])
    lock_bytes, journal_bytes = base_lock.path.read_bytes(), base_lock.journal.read_bytes()
    seen = Lockfile.load(base_lock.path, "s")  # what plan and status do
    assert set(seen.scenes) == {"a", "b"}
    assert base_lock.path.read_bytes() == lock_bytes
    assert base_lock.journal.read_bytes() == journal_bytes


def test_the_next_writer_folds_the_journal_in_on_load(base_lock: Lockfile) -> None:
    put_all(base_lock, [("b", entry()), ("a", entry("done", job="job-2"))])
    with exclusive(base_lock.path):  # a render killed before it could fold it in, then rerun
        loaded = Lockfile.load(base_lock.path, "s")
        assert not base_lock.journal.exists()
        # the same bytes a full rewrite of that state gives: what users commit did not change
        assert base_lock.path.read_bytes() == plain(loaded) == plain(base_lock)
    assert Lockfile.load(base_lock.path, "s").scenes == base_lock.scenes


def test_releasing_the_lock_folds_the_journal_in(tmp_path: Path) -> None:
    path = tmp_path / "s.lock"
    with exclusive(path):
        lock = Lockfile.load(path, "s")
        put_all(lock, [("a", entry("submitting", job=None)), ("a", entry("done"))])
        assert lock.journal.exists() and not path.exists()
    assert not lock.journal.exists()
    assert path.read_bytes() == plain(lock)


def test_a_torn_last_line_is_ignored_at_every_byte_offset(base_lock: Lockfile) -> None:
    put_all(base_lock, [("b", entry("submitting", job=None)), ("b", entry())])
    whole = base_lock.journal.read_bytes()
    last_start = whole.rstrip(b"\n").rfind(b"\n") + 1
    for cut in range(last_start, len(whole) + 1):
        base_lock.journal.write_bytes(whole[:cut])
        got = Lockfile.load(base_lock.path, "s")
        # the last change counts once its newline is written (its commit then returned)
        assert got.scenes["b"].state == ("submitted" if cut == len(whole) else "submitting"), cut
    # the header itself torn: no change at all, still no error
    for cut in range(0, whole.find(b"\n") + 1):
        base_lock.journal.write_bytes(whole[:cut])
        assert set(Lockfile.load(base_lock.path, "s").scenes) == {"a"}, cut


def test_the_unwritten_tail_of_a_power_loss_is_ignored(base_lock: Lockfile) -> None:
    put_all(base_lock, [("b", entry()), ("c", entry())])
    whole = base_lock.journal.read_bytes()
    second = whole.rstrip(b"\n").rfind(b"\n") + 1
    # the filesystem kept the file's new length but not the last line's bytes
    base_lock.journal.write_bytes(whole[:second] + b"\0" * (len(whole) - second - 1) + b"\n")
    assert set(Lockfile.load(base_lock.path, "s").scenes) == {"a", "b"}


def test_a_crash_between_the_rewrite_and_the_journal_removal_replays_nothing(
    base_lock: Lockfile,
) -> None:
    put_all(base_lock, [("b", entry())])
    stale = base_lock.journal.read_bytes()
    put_now(base_lock, "b", entry("failed", error="later"))  # the rewrite removes the journal
    base_lock.journal.write_bytes(stale)  # as if the removal never happened
    assert Lockfile.load(base_lock.path, "s").scenes["b"].state == "failed"
    with exclusive(base_lock.path):
        Lockfile.load(base_lock.path, "s")
    assert not base_lock.journal.exists()  # the writer removed the stale journal


def test_a_deleted_lockfile_forgets_the_journal_too(base_lock: Lockfile) -> None:
    """'delete it to forget every recorded job' still holds with a journal beside it."""
    put_all(base_lock, [("b", entry())])
    base_lock.path.unlink()
    assert Lockfile.load(base_lock.path, "s").scenes == {}


def test_a_first_render_killed_before_any_lockfile_existed_is_replayed(tmp_path: Path) -> None:
    lock = Lockfile(tmp_path / "s.lock", "s")
    put_all(lock, [("a", entry())])
    assert not lock.path.exists()
    assert Lockfile.load(lock.path, "s").scenes["a"].job_id == "job-1"


def test_a_full_disk_midway_through_an_append_leaves_a_journal_that_loads(
    base_lock: Lockfile, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_all(base_lock, [("b", entry())])
    real_write = os.write

    def half_then_full(fd: int, data: bytes) -> int:
        if len(data) > 8:
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(LockfileError, match="No space left on device"):
        put_all(base_lock, [("c", entry())])
    monkeypatch.setattr(os, "write", real_write)
    put_all(base_lock, [("d", entry())])  # space again: the next commit takes c along
    assert set(Lockfile.load(base_lock.path, "s").scenes) == {"a", "b", "c", "d"}


HOSTILE = [
    (b"{not json\n", 2, "not valid JSON"),
    (b"[1, 2]\n", 2, "not a JSON object"),
    (b'{"entry": {}}\n', 2, "names no scene"),
    (b'{"scene": "b"}\n', 2, "has no entry"),
    (b'{"scene": "b", "entry": []}\n', 2, "scene 'b' is not an object"),
    (b'{"scene": "b", "entry": {"fingerprint": "x", "provider": "p", "key": "k", '
     b'"state": "exploded"}}\n', 2, "unknown state 'exploded'"),
    (b'{"scene": "b", "entry": {"fingerprint": "x", "provider": "p", "key": "k", '
     b'"state": "done", "job_id": "j"}}\n', 2, "done but records no output"),
    (b'{"scene": "b", "entry": {"fingerprint": "x", "provider": "p", "key": "k", '
     b'"state": "submitted", "job_id": "j", "frames": [1]}}\n', 2, "not an object"),
    (b'{"scene": "b", "entry": {"fingerprint": "x", "provider": "p", "key": "k", '
     b'"state": "done", "job_id": "j", "output": {"path": "../../etc/passwd", "sha256": "f", '
     b'"size": 1}}}\n', 2, "not inside the spec's folder"),
    (b'{"scene": "b", "entry": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", 2, "nested too deep"),
    (b'{"scene": "b", "entry": ' + b"9" * 5000 + b"}\n", 2, "not valid JSON"),
    (b'{"scene": "\xff"}\n', 2, "not UTF-8"),
]


@pytest.mark.parametrize(("line", "lineno", "message"), HOSTILE)
def test_a_hostile_journal_line_is_a_located_error(
    base_lock: Lockfile, line: bytes, lineno: int, message: str
) -> None:
    put_all(base_lock, [("c", entry())])  # a real header and a good line first
    good = base_lock.journal.read_bytes().splitlines(keepends=True)
    base_lock.journal.write_bytes(good[0] + line + good[1])
    for holding in (False, True):
        with pytest.raises(LockfileError, match=message) as caught:
            if holding:
                with exclusive(base_lock.path):
                    Lockfile.load(base_lock.path, "s")
            else:
                Lockfile.load(base_lock.path, "s")
        assert f"{base_lock.journal}:{lineno}:" in str(caught.value)
    assert base_lock.journal.exists()  # a writer never folds in, nor drops, what it refused


def test_a_journal_of_another_format_is_a_located_error(base_lock: Lockfile) -> None:
    base_lock.journal.write_bytes(b'{"base": null, "journal": 9}\n')
    with pytest.raises(LockfileError, match="journal format 9 is not 1"):
        Lockfile.load(base_lock.path, "s")


def test_a_journal_symlink_out_of_the_project_is_refused_and_never_written(
    tmp_path: Path,
) -> None:
    project, outside = tmp_path / "project", tmp_path / "secret.txt"
    project.mkdir()
    outside.write_text("not yours\n")
    path = project / "s.lock"
    path.with_name("s.lock.journal").symlink_to(outside)
    with pytest.raises(LockfileError, match="journal leads outside the project"):
        Lockfile.load(path, "s")
    lock = Lockfile(path, "s")  # one made without loading (as tests do) still never follows it
    with pytest.raises(LockfileError, match="cannot write the lockfile's journal"):
        put_all(lock, [("a", entry())])
    assert outside.read_text() == "not yours\n"


def test_a_fifo_journal_is_refused_without_hanging(tmp_path: Path) -> None:
    path = tmp_path / "s.lock"
    os.mkfifo(path.with_name("s.lock.journal"))
    with pytest.raises(LockfileError, match="not a regular file"):
        Lockfile.load(path, "s")


KILLED_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from hailuo_pipe.state.group_commit import GroupWriter
    from hailuo_pipe.state.lockfile import Entry, Lockfile, exclusive

    path = Path(sys.argv[1])

    async def main(lock):
        writer = GroupWriter(lock)
        async def scene(i):
            for step in range(1000):
                e = Entry("sha256:ab", "wavespeed", "submitted", "k", {"prompt": "x" * 300},
                          job_id=f"job-{i}-{step}")
                await writer.transition(f"s{i:03d}", "resumed", e)
                print(f"s{i:03d} {step}", flush=True)  # acknowledged: durable from here on
        await asyncio.gather(*(scene(i) for i in range(50)))

    with exclusive(path):
        asyncio.run(main(Lockfile.load(path, "s")))
    """
)


def test_a_kill_during_group_commits_loses_no_acknowledged_change(tmp_path: Path) -> None:
    path = tmp_path / "s.lock"
    for delay in (0.6, 0.9, 1.3, 1.7):
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        acked: dict[str, int] = {}
        for row in out.splitlines():
            scene, _, step = row.partition(" ")
            if step.isdigit():  # the last row may itself be cut short by the kill
                acked[scene] = int(step)
        lock = Lockfile.load(path, "s")  # never a traceback, whatever byte it died at
        for scene, step in acked.items():
            recorded = int((lock.scenes[scene].job_id or "").rsplit("-", 1)[1])
            assert recorded >= step, (delay, scene)
    assert acked, "the writer was killed before it acknowledged anything"
    with exclusive(path):  # the next writer folds in what the last kill left
        folded = Lockfile.load(path, "s")
    assert not folded.journal.exists()
    assert Lockfile.load(path, "s").scenes == folded.scenes


def test_a_saved_plan_made_over_a_journal_matches_the_folded_lockfile(
    base_lock: Lockfile,
) -> None:
    from hailuo_pipe.plan.saved import file_digest, lockfile_digest

    put_all(base_lock, [("b", entry())])
    seen = lockfile_digest(base_lock.path, "s")  # what `plan --out` records, without the lock
    with exclusive(base_lock.path):
        Lockfile.load(base_lock.path, "s")  # what `render --plan` does before checking it
        assert file_digest(base_lock.path) == seen == lockfile_digest(base_lock.path, "s")


def test_a_render_leaves_no_journal_and_git_sees_only_the_lockfile(write_spec) -> None:  # type: ignore[no-untyped-def]
    from hailuo_pipe.render import RenderOptions, render
    from hailuo_pipe.validate import load_storyboard

    spec = write_spec(
        """
        version: 1
        name: story
        defaults: {provider: preview, resolution: 512p}
        scenes:
          - {id: a, prompt: one, image: assets/a.png}
          - {id: b, prompt: two, image: {from: a, frame: last}}
        """
    )
    root = spec.parent
    git = ["git", "-C", str(root), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (root / ".gitignore").write_text("renders/\n.*.lock.pid\n")
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "spec"], check=True)
    result = render(load_storyboard(spec), RenderOptions())
    assert not result.failed
    assert not journals.journal_path(spec.with_suffix(".lock")).exists()
    status = subprocess.run(
        [*git, "status", "--porcelain"], check=True, capture_output=True, text=True
    ).stdout
    assert status.splitlines() == ["?? story.lock"]


def test_journal_lines_are_checked_like_the_lockfile_entries(base_lock: Lockfile) -> None:
    """An odd job id recorded as submitted is parked on replay, as it is on load."""
    put_all(base_lock, [("b", entry())])
    lines = base_lock.journal.read_bytes().splitlines(keepends=True)
    odd = json.loads(lines[1])
    odd["entry"]["job_id"] = "../../admin"
    base_lock.journal.write_bytes(lines[0] + json.dumps(odd).encode() + b"\n")
    assert Lockfile.load(base_lock.path, "s").scenes["b"].state == "unknown"


def test_the_module_writes_through_named_functions(base_lock: Lockfile) -> None:
    """The benchmarks count bytes by wrapping these two: each write goes through one of them."""
    assert lockfile.append_journal is journals.append
    assert callable(lockfile.write_lockfile)


def test_another_thread_of_the_holding_process_reads_without_folding_in(tmp_path: Path) -> None:
    """The lock belongs to the thread that took it: a display thread loading the lockfile of
    the render running beside it must not rewrite it under the render's feet."""
    import threading

    path = tmp_path / "s.lock"
    with exclusive(path):
        lock = Lockfile.load(path, "s")
        put_all(lock, [("a", entry())])
        seen: list[Lockfile] = []
        reader = threading.Thread(target=lambda: seen.append(Lockfile.load(path, "s")))
        reader.start()
        reader.join()
        assert set(seen[0].scenes) == {"a"}
        assert lock.journal.exists() and not path.exists()  # left as it was
        put_all(lock, [("b", entry())])  # and the render goes on appending
    assert set(Lockfile.load(path, "s").scenes) == {"a", "b"}


SECRET = "sk-SECRET-journal-71c9a2"


def test_a_killed_render_leaves_a_journal_without_any_secret(emulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from support import soak

    emulator.reset(job_seconds=5.0, key=SECRET)
    spec = soak.write_workdir(tmp_path, 5)
    env = {**os.environ}
    for prefix in ("WAVESPEED", "GMI", "MINIMAX", "RUNWARE", "APIFRAME"):
        env[f"{prefix}_API_KEY"], env[f"{prefix}_BASE_URL"] = SECRET, emulator.url
    proc = subprocess.Popen(
        [sys.executable, "-m", "hailuo_pipe", "render", "-q", str(spec)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    journal = journals.journal_path(spec.with_suffix(".lock"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and b'"submitted"' not in _bytes(journal):
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert b'"submitted"' in _bytes(journal), "the render recorded no job before the kill"
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert [p.name for p in written if SECRET.encode() in p.read_bytes()] == []
    assert Lockfile.load(spec.with_suffix(".lock"), soak.NAME).scenes  # what it recorded


def _bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""
