"""When to ask a provider again whether a job is done.

Without knowledge, polls start dense and spread out in proportion to the time already waited
(a job that has run for a minute will rarely end in the next second), which bounds the detection
delay to a fraction of the job's length. Those polls fall on a geometric grid, and each job gets
its own phase on it: jobs submitted together then poll at different moments rather than in
step, so the first of them to end is seen within a small part of one interval, and it teaches
the schedule when the others will end. Once jobs of a provider have finished in this run, their
durations say when the others will finish: the schedule then sleeps until shortly before that
and checks densely around it, so a job is seen done within a small fraction of its length at a
handful of requests.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import statistics
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from hailuo_pipe.providers.base import JobStatus


@dataclass(frozen=True)
class Estimate:
    """What finished jobs of one provider say: a typical duration and an early one."""

    typical: float
    early: float
    count: int


@dataclass(frozen=True)
class PollSchedule:
    """`next_delay(elapsed)`: seconds to wait before the next poll of a job `elapsed` old.

    `estimate` is read on every call, so a job that started before anything finished still
    benefits once its siblings do.
    """

    estimate: Callable[[], Estimate | None] = lambda: None
    min_delay: float = 0.1
    max_delay: float = 30.0
    growth: float = 0.2  # without knowledge: wait this fraction of the time already waited
    phase: float = 0.0  # in [0, 1): where on the blind grid this job polls

    def next_delay(self, elapsed: float) -> float:
        known = self.estimate()
        if known is None:
            return self._blind(elapsed)
        return self._informed(elapsed, known)

    def overdue(self, elapsed: float) -> bool:
        """Whether a job this old has already outlived the early jobs of its provider."""
        known = self.estimate()
        return known is not None and elapsed >= known.early

    def _blind(self, elapsed: float) -> float:
        delay = self.growth * elapsed
        if delay <= self.min_delay or delay >= self.max_delay:
            return _clamp(delay, self.min_delay, self.max_delay)
        # the next point of the grid start * ratio**(k + phase) after `elapsed`: as many polls
        # as plain `growth * elapsed` steps, but shifted by this job's phase
        start, ratio = self.min_delay / self.growth, 1 + self.growth
        # (the epsilon: a poll made on a grid point must not find that same point next)
        k = math.floor(math.log(elapsed / start, ratio) - self.phase + 1e-9) + 1
        return _clamp(start * ratio ** (k + self.phase) - elapsed, self.min_delay, self.max_delay)

    def _informed(self, elapsed: float, known: Estimate) -> float:
        # denser where jobs end alike (a narrow window costs few polls), sparser where their
        # durations spread (a wide window polled densely would cost many)
        spread = known.typical - known.early
        step = _clamp(spread / 4, 0.0125 * known.typical, 0.025 * known.typical)
        step = _clamp(step, self.min_delay / 4, self.max_delay / 4)
        # observations include their own detection delay (up to a step): the window opens a
        # step before the early ones, not more (each step earlier is a poll more per job)
        opens = known.early - step
        if elapsed < opens:
            return min(opens - elapsed, self.max_delay)
        closes = known.typical + 4 * step
        if elapsed <= closes:
            return step
        # later than every job so far: spread out again, relative to the overrun
        return _clamp(self.growth * (elapsed - known.early), step, self.max_delay)


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


class DurationEstimator:
    """Typical job durations per provider, learnt from the jobs finished in this run."""

    def __init__(self, window: int = 50, min_delay: float = 0.1, max_delay: float = 30.0) -> None:
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._window = window
        self._min_delay = min_delay
        self._max_delay = max_delay
        self._jobs = itertools.count()

    def observe(self, provider: str, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._lock:
            self._seen.setdefault(provider, deque(maxlen=self._window)).append(seconds)

    def estimate(self, provider: str) -> Estimate | None:
        with self._lock:
            seen = list(self._seen.get(provider, ()))
        if not seen:
            return None
        ordered = sorted(seen)
        early = ordered[len(ordered) // 10]  # a low quantile: robust to one slow outlier
        return Estimate(typical=statistics.median(ordered), early=early, count=len(ordered))

    def schedule(self, provider: str) -> PollSchedule:
        """A new job's schedule. Phases follow the golden ratio, so those of any number of
        jobs in a row are spread evenly over the grid."""
        return PollSchedule(
            estimate=lambda: self.estimate(provider),
            min_delay=self._min_delay,
            max_delay=self._max_delay,
            phase=(next(self._jobs) * GOLDEN) % 1.0,
        )


GOLDEN = (math.sqrt(5) - 1) / 2


JOB_TIMEOUT = 60 * 60.0  # a job still running after an hour is left to a later run


class Poller:
    """Polls jobs of one render until they end, each on its own schedule, all learning from
    the jobs that finish: a sibling of the same provider ending sooner than they expected
    wakes the others' sleeps."""

    def __init__(self, stop: asyncio.Event, estimator: DurationEstimator | None = None) -> None:
        self.stop = stop
        self.estimator = estimator or DurationEstimator()
        # done when a job of that provider ended earlier than the schedule expected
        self._learnt: dict[str, asyncio.Future[None]] = {}
        self._stopping: asyncio.Task[object] | None = None  # done once `stop` is set

    def close(self) -> None:
        """Let go of what the sleeps waited on (at the end of a render)."""
        if self._stopping is not None:
            self._stopping.cancel()

    async def until_done(
        self,
        poll: Callable[[], Awaitable[JobStatus]],
        provider: str,
        started: float,
        *,
        just_sent: bool,
        seen: Callable[[JobStatus, float], None],
        overdue: Callable[[JobStatus, float], Exception],
    ) -> JobStatus:
        """Poll until the job ends. `started`: its submit, in `time.monotonic()`; `seen` is told
        each new state; `overdue` makes the error for a job running past JOB_TIMEOUT.
        Raises `Interrupted` when the render is stopped while waiting."""
        schedule = self.estimator.schedule(provider)
        last_state = ""
        if just_sent:  # asking at once would only hear "queued"
            await self._sleep_until_due(provider, schedule, started, 0.0)
        while True:
            elapsed = time.monotonic() - started
            status = await poll()
            if status.state != last_state:
                seen(status, elapsed)
                last_state = status.state
            if status.terminal:
                if status.state == "succeeded":
                    self._observe(provider, elapsed)
                return status
            if elapsed > JOB_TIMEOUT:
                raise overdue(status, elapsed)
            await self._sleep_until_due(provider, schedule, started, elapsed)

    async def _sleep_until_due(
        self, provider: str, schedule: PollSchedule, started: float, polled_at: float
    ) -> None:
        """Sleep until the schedule says poll again. A sibling job of the same provider ending
        earlier than expected meanwhile teaches the schedule when jobs end, so the wait is
        reconsidered: jobs submitted together are then seen done together, not each after its
        own long blind wait."""
        due = started + polled_at + schedule.next_delay(polled_at)
        blind = schedule.estimate() is None
        loop = asyncio.get_running_loop()
        if self._stopping is None:
            self._stopping = loop.create_task(self.stop.wait())
        # futures shared by every sleeper: a sleep makes no task of its own
        while (left := due - time.monotonic()) > 0:
            learnt = self._learnt.setdefault(provider, loop.create_future())
            await asyncio.wait(
                (self._stopping, learnt), timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
            if self.stop.is_set():
                raise Interrupted
            elapsed = time.monotonic() - started
            if blind and schedule.overdue(elapsed):
                return  # the first sibling to end ran no longer than this job has: ask now
            due = min(due, started + elapsed + schedule.next_delay(elapsed))

    def _observe(self, provider: str, seconds: float) -> None:
        before = self.estimator.estimate(provider)
        self.estimator.observe(provider, seconds)
        after = self.estimator.estimate(provider)
        # Wake this provider's sleepers only when what they sleep by moved earlier: waking a
        # hundred of them at each of a hundred ends that teach nothing new is ten thousand
        # turns of the loop a wave, at the moment its jobs' submits wait for the loop.
        if before is None or (after is not None and after.early < before.early * EARLIER):
            learnt = self._learnt.pop(provider, None)
            if learnt is not None and not learnt.done():
                learnt.set_result(None)


EARLIER = 0.99  # an early end moved by less than this (under the narrowest step) changes no wait


def age(timestamp: str | None) -> float:
    """Seconds since an ISO timestamp from the lockfile (0 when unknown)."""
    if not timestamp:
        return 0.0
    try:
        then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return 0.0
    return max(0.0, (datetime.now(UTC) - then).total_seconds())


class Interrupted(Exception):
    """The render was stopped (Ctrl-C, SIGTERM) while this scene waited."""
