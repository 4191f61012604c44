"""A render's frame extraction: each finished clip's first and last frames, as PNGs, recorded.

Decoding and PNG encoding are CPU work that holds the GIL for part of the time; done in threads
of the render's process, they make the event loop wait for the GIL at every turn (the convoy
of a busy thread and an I/O loop), and so every poll, submit and download with it. A render
with many clips to extract therefore does it in worker processes, on the other CPUs, with the
event loop's process left to the network; a small one keeps threads, which start at once.
Workers ignore Ctrl-C and SIGTERM: the render stops them itself once its scenes have wound
down, so an extraction under way when the user presses Ctrl-C still completes.
"""

from __future__ import annotations

import concurrent.futures.process
import contextlib
import multiprocessing
import os
import signal
from collections.abc import Mapping
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from hailuo_pipe.errors import MediaError
from hailuo_pipe.state.lockfile import FileRecord
from hailuo_pipe.storyboard.images import remember_written

NICE = 10  # how much lower the workers' priority is
PROCESSES_FROM = 64  # clips to extract: below this, starting worker processes costs more
QUEUED = 256  # clips handed to the workers ahead of time (see `_processes`)


def pool(clips: int) -> Executor:
    """Where to extract the frames of `clips` clips: as many workers as CPUs (more would only
    starve the event loop's process of CPU too)."""
    workers = _workers()
    if clips < PROCESSES_FROM or workers < 2:
        return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="frames")
    return _processes(workers)


def _workers() -> int:
    return os.cpu_count() or 1


def _processes(workers: int) -> ProcessPoolExecutor:
    # The executor's thread in this process hands workers their clips, and only when it gets
    # this process's GIL, which the event loop holds for most of a wave's end. With the
    # stdlib's queue of `workers + 1` clips, workers sat idle while a wave's clips waited for
    # that thread, and a 1,000-clip render ended a second after its last download (bench/
    # README.md): a queue as deep as a wave keeps them fed. The depth is read at construction.
    module = concurrent.futures.process
    default = getattr(module, "EXTRA_QUEUED_CALLS", 1)
    setattr(module, "EXTRA_QUEUED_CALLS", QUEUED)  # noqa: B010  (typeshed calls it Final)
    try:
        # forkserver: forking the render's process, with its threads and their locks, is unsafe
        context = multiprocessing.get_context("forkserver")
        return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker)
    finally:
        setattr(module, "EXTRA_QUEUED_CALLS", default)  # noqa: B010


def warm(decoders: Executor) -> None:
    """Start worker processes and load PyAV in each, now rather than when the first clips end
    (run in a thread while the first jobs run: `run._warm`): started then, their start and
    imports took CPU from the loop just as a hundred ended jobs' next submits waited for it.
    A failure is left for the first extraction to report."""
    if not isinstance(decoders, ProcessPoolExecutor):
        return
    with contextlib.suppress(Exception):
        workers = [decoders.submit(_load) for _ in range(_workers())]
        for started in workers:
            started.result()


def _load() -> None:
    import hailuo_pipe.media  # noqa: F401


def _worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # below the render's own process: when jobs end together, their frames wait a little and
    # the submits that take their slots (and the polls) do not
    with contextlib.suppress(OSError):
        os.nice(NICE)


def frames(
    scene_id: str, clip: Path, pngs: Mapping[str, Path], base: Path
) -> dict[str, FileRecord]:
    """Extract and record the frames of `clip` (run in a worker: everything here pickles)."""
    from hailuo_pipe.render.shared import frame_records

    try:
        return frame_records(clip, pngs, base)
    except MediaError as err:
        raise MediaError(
            f"{scene_id}: the downloaded clip is not a readable video ({err})"
        ) from None


def remember(records: Mapping[str, FileRecord], base: Path) -> None:
    """Tell this process's hash memo what a worker hashed: the first rerun reads none of the
    frames again (a worker's memo dies with it)."""
    for record in records.values():
        remember_written(base / record.path, record.sha256)
