"""When to ask a provider again whether a job is done.

Without knowledge, polls start dense and spread out in proportion to the time already waited
(a job that has run for a minute will rarely end in the next second), which bounds the detection
delay to a fraction of the job's length. Once jobs of a provider have finished in this run, their
durations say when the others will finish: the schedule then sleeps until shortly before that
and checks densely around it, so a job is seen done within a small fraction of its length at a
handful of requests.
"""

from __future__ import annotations

import statistics
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


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

    def next_delay(self, elapsed: float) -> float:
        known = self.estimate()
        if known is None:
            return self._blind(elapsed)
        return self._informed(elapsed, known)

    def _blind(self, elapsed: float) -> float:
        return _clamp(self.growth * elapsed, self.min_delay, self.max_delay)

    def _informed(self, elapsed: float, known: Estimate) -> float:
        step = _clamp(0.025 * known.typical, self.min_delay / 2, self.max_delay / 4)
        # observations include their own detection delay, so the window opens a little early
        opens = known.early - max(0.05 * known.typical, 2 * step)
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
        return PollSchedule(
            estimate=lambda: self.estimate(provider),
            min_delay=self._min_delay,
            max_delay=self._max_delay,
        )
