"""Frame extraction of a large render runs in worker processes, records the same frames, and
tells the render's hash memo what it hashed; a small render keeps threads."""

from __future__ import annotations

import concurrent.futures.process
import hashlib
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from support.emulator_fixture import provider_env

from hailuo_emulator import Emulator
from hailuo_pipe.render import RenderOptions, extract, render
from hailuo_pipe.state.lockfile import Lockfile
from hailuo_pipe.storyboard import images
from hailuo_pipe.validate import load_storyboard


def test_a_small_render_extracts_in_threads_a_large_one_in_processes() -> None:
    small, large = extract.pool(extract.PROCESSES_FROM - 1), extract.pool(extract.PROCESSES_FROM)
    try:
        assert isinstance(small, ThreadPoolExecutor)
        assert isinstance(large, ProcessPoolExecutor)
    finally:
        small.shutdown()
        large.shutdown()


def test_workers_are_handed_a_waves_clips_ahead_of_time() -> None:
    """The workers' queue holds far more than the stdlib's `workers + 1` clips: its thread in
    the render's process, starved of the GIL while the event loop is busy, otherwise leaves the
    workers idle (bench/README.md). Read from the executor's internals: what this guards is a
    measured bottleneck, with no behaviour a test could time without flaking."""
    import concurrent.futures.process

    before = concurrent.futures.process.EXTRA_QUEUED_CALLS
    workers = extract.pool(extract.PROCESSES_FROM)
    try:
        assert isinstance(workers, ProcessPoolExecutor)
        assert workers._call_queue._maxsize >= extract.QUEUED  # type: ignore[attr-defined]
        assert before == concurrent.futures.process.EXTRA_QUEUED_CALLS  # others' pools as ever
    finally:
        workers.shutdown()


def test_workers_run_below_the_event_loops_priority() -> None:
    workers = extract.pool(extract.PROCESSES_FROM)
    try:
        assert workers.submit(os.nice, 0).result() >= os.nice(0) + extract.NICE
    finally:
        workers.shutdown()


def test_frames_extracted_by_workers_are_recorded_and_remembered(
    write_spec, emulator: Emulator  # type: ignore[no-untyped-def]
) -> None:
    n = extract.PROCESSES_FROM
    scenes = "".join(
        f'  - id: s{i:03d}\n    prompt: "[Static shot] scene {i}"\n'
        f"    image: https://example.com/frames/{i}.jpg\n"
        for i in range(n)
    )
    spec = write_spec(f"version: 1\nname: many\ndefaults:\n  provider: runware\nscenes:\n{scenes}")
    board = load_storyboard(spec)
    result = render(board, RenderOptions(environ=provider_env(emulator), concurrency=32))
    assert {r.outcome for r in result.results} == {"rendered"}
    lock = Lockfile.load(board.lock_path, board.name)
    for entry in lock.scenes.values():
        assert set(entry.frames) == {"first", "last"}
        for record in entry.frames.values():
            data = (spec.parent / record.path).read_bytes()
            assert hashlib.sha256(data).hexdigest() == record.sha256
            assert record.pixels and record.size == len(data)
    images._save_hashes()  # what the render's process does as it exits
    memo = json.loads((board.render_dir / ".hashes.json").read_text())
    assert {Path(r.path).name for e in lock.scenes.values() for r in e.frames.values()} <= set(memo)


def test_a_pool_whose_worker_died_is_made_anew_once_and_the_frames_extracted(
    write_spec, monkeypatch  # type: ignore[no-untyped-def]
) -> None:
    from concurrent.futures import BrokenExecutor, Future

    class Broken(ThreadPoolExecutor):
        """What a process pool is after one of its workers died: it refuses everything."""

        def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
            future: Future[object] = Future()
            future.set_exception(BrokenExecutor("a worker died"))
            return future

    made: list[str] = []

    def pool(clips: int):  # type: ignore[no-untyped-def]
        made.append("broken" if not made else "fresh")
        return Broken(max_workers=1) if len(made) == 1 else ThreadPoolExecutor(max_workers=2)

    monkeypatch.setattr(extract, "pool", pool)
    spec = write_spec(
        "version: 1\nname: b\ndefaults: {provider: preview, resolution: 512p}\nscenes:\n"
        + "".join(f"  - {{id: s{i}, prompt: p{i}, image: assets/a.png}}\n" for i in range(4))
    )
    result = render(load_storyboard(spec), RenderOptions(concurrency=4))
    assert {r.outcome for r in result.results} == {"rendered"}, result.results
    assert made == ["broken", "fresh"]  # four scenes heard of it; one new pool
    lock = Lockfile.load(spec.with_suffix(".lock"), "b")
    assert all(set(e.frames) == {"first", "last"} for e in lock.scenes.values())


def test_loading_pyav_ahead_of_the_first_clip_leaves_a_failure_to_that_clip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the warm-up runs in a thread nobody waits on: an error there would be printed as an
    # unretrieved future's traceback, so it is left for the clip check to report
    from hailuo_pipe.render import run

    monkeypatch.setitem(sys.modules, "hailuo_pipe.media", None)  # import raises ImportError
    run._load_media(ThreadPoolExecutor(max_workers=1))
    with pytest.raises(ImportError):
        import hailuo_pipe.media  # noqa: F401


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one CPU: frames are extracted in threads")
def test_a_warmed_pool_has_started_its_worker_processes() -> None:
    """Started while the first jobs run (`run._warm`), not by the first clips to end."""
    decoders = extract.pool(extract.PROCESSES_FROM)
    try:
        extract.warm(decoders)
        assert len(decoders._processes) == extract._workers()  # type: ignore[attr-defined]
    finally:
        decoders.shutdown()


def test_warming_a_pool_that_is_shut_down_or_broken_is_left_to_the_first_extraction() -> None:
    """The warm-up runs in a thread nobody waits on: a pool it cannot use raises nothing there
    (the first extraction reports, and replaces, a broken pool)."""
    decoders = extract.pool(extract.PROCESSES_FROM)
    decoders.shutdown()
    extract.warm(decoders)  # submit refused: RuntimeError, swallowed

    class Broken(ProcessPoolExecutor):
        def submit(self, *args: object, **kwargs: object) -> Any:
            raise concurrent.futures.process.BrokenProcessPool("a worker died")

    extract.warm(Broken(max_workers=1))
