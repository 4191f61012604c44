"""A render's lockfile writes: each on disk before the render goes on, as an append to the
lockfile's journal (journal.py), shared by the tasks that make their changes together."""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from hailuo_pipe.state import journal as journals
from hailuo_pipe.state.entry import Entry
from hailuo_pipe.state.lockfile import Lockfile

QUICK = 0.005  # seconds: an append this fast is made on the event loop (see GroupWriter)
# Lockfile writes get a thread of their own: queued behind frame extractions in the default
# pool, a "submitted" record would wait for seconds while its job already runs.
_WRITER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lockfile")


class GroupWriter:
    """Lockfile writes for concurrent tasks, coalesced like a database's group commit.

    Each caller returns only once a write that includes its change is on disk (so "submitting"
    is durable before the request goes out), but the changes made in one turn of the event
    loop, or while a write is running, share one write. A write appends the changed entries to
    the journal: its cost is that of the changes, not of the whole lockfile. It is made on the
    event loop itself while appends are quick (a local disk), and in a thread of its own once
    one was slow, so that the loop keeps polling meanwhile.
    """

    def __init__(self, lock: Lockfile) -> None:
        self.lock = lock
        self._waiting: list[asyncio.Future[None]] = []  # callers the next write will answer
        self._writing: list[asyncio.Future[None]] | None = None  # those of the write under way
        self._quick = True  # the last append took less than QUICK: make the next one at once
        # the loop at the end of whose turn a write is asked for (a loop that closed before
        # that turn ended, a render cut short, must not keep the next one from asking)
        self._due: asyncio.AbstractEventLoop | None = None

    async def transition(
        self,
        scene_id: str,
        name: str,
        entry: Entry | None = None,
        *,
        again: bool = False,
        at_once: bool = False,
        **changes: Any,
    ) -> Entry:
        """`Lockfile.transition`, on disk before it returns. `at_once`: written in this turn of
        the loop, with every change not yet written, when appends are quick and none is under
        way: for the record a request waits for, which then leaves in this turn rather than
        two turns later (a turn lasts milliseconds when a hundred jobs end together)."""
        done = self.lock.transition(scene_id, name, entry, again=again, **changes)
        self.lock._unwritten[scene_id] = None  # the next group commit journals it
        if done.state == "done":
            self.lock.encode_ahead(scene_id)
        if at_once and self._write_now(asyncio.get_running_loop()):
            return done
        await self.flush()
        return done

    async def flush(self) -> None:
        """Return once every change made so far is on disk; the write's error otherwise."""
        loop = asyncio.get_running_loop()
        written = loop.create_future()
        self._waiting.append(written)
        if self._writing is None and self._due is not loop:
            # at the end of this turn of the loop, not now: the changes that the turn's other
            # callbacks make (a hundred jobs ending together) share the write
            self._due = loop
            loop.call_soon(self._start, loop)
        await written

    # Why on the loop, and callbacks rather than a task: each hop between the thread, a task and
    # its callers is a turn of the event loop, and a turn lasts milliseconds when a hundred jobs
    # end together. A "submitting" record, which the next job's submit waits for, took 25-40 ms
    # through a lock and the thread, for an append of 0.4 ms. In the thread, a write's end now
    # answers its callers in one turn and starts the next write, of what changed meanwhile, in
    # the same one.

    def _write_now(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Journal every change not yet written, on the loop, now, and answer whoever waits
        for one; False, with nothing written, when a write is under way or appends are slow
        (the caller then waits for the next group commit). The write's error otherwise."""
        if self._writing is not None or not self._quick:
            return False
        dirty = self._take()
        try:
            appended = self._append(self._lines(dirty), len(dirty), wait=False)
        except Exception as err:
            self._ended(loop, dirty, err)
            raise
        if not appended:  # a rewrite holds the file: as if this had not been tried
            self.lock._unwritten = {**dirty, **self.lock._unwritten}
            self._waiting, self._writing = self._writing or [], None
            return False
        self._ended(loop, dirty, None)
        return True

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Journal, as one append, every change not yet written."""
        self._due = None
        dirty = self._take()
        if not dirty:  # written meanwhile, `at_once`: every caller's change is on disk
            self._ended(loop, dirty, None)
            return
        try:
            lines = self._lines(dirty)
            if self._quick and self._append(lines, len(dirty), wait=False):
                self._ended(loop, dirty, None)
                return
            work = _WRITER.submit(self._append, lines, len(dirty))
        except Exception as err:
            self._ended(loop, dirty, err)
            return

        def hand_back(work: Future[bool]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: a render cut short
                loop.call_soon_threadsafe(self._ended, loop, dirty, work.exception())

        work.add_done_callback(hand_back)

    def _take(self) -> dict[str, None]:
        """The changes not yet written; whoever waits for one now waits for this write."""
        dirty, self.lock._unwritten = self.lock._unwritten, {}
        self._writing, self._waiting = self._waiting, []
        return dirty

    def _lines(self, dirty: dict[str, None]) -> bytes:
        return b"".join(journals.line(sid, self.lock.scenes[sid].to_json()) for sid in dirty)

    def _append(self, lines: bytes, count: int, *, wait: bool = True) -> bool:
        began = time.perf_counter()
        appended = self.lock.append(lines, count, wait=wait)
        if appended:
            self._quick = time.perf_counter() - began < QUICK
        return appended

    def _ended(
        self, loop: asyncio.AbstractEventLoop, dirty: dict[str, None], err: BaseException | None
    ) -> None:
        callers, self._writing = self._writing or [], None
        if err is not None:  # not on disk: the next write, whoever asks for it, takes them along
            self.lock._unwritten = {**dirty, **self.lock._unwritten}
        for written in callers:
            if written.done():  # its caller was cancelled
                continue
            if err is None:
                written.set_result(None)
            else:
                written.set_exception(err)
        if self._waiting:
            self._start(loop)
