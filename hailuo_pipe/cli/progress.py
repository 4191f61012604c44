"""Showing a render as it happens: live lines on a terminal, plain log lines elsewhere."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

from hailuo_pipe.redact import shown
from hailuo_pipe.render.run import Event

ACTIVE = {"submitting", "queued", "running", "downloading"}
JOB_ENDS = {"succeeded", "failed"}


def job_end(event: Event) -> bool:
    """The poll's report that a job ended at the provider (it carries the job's age): the
    scene's own outcome follows at once (`done`, or `failed` with the error), so showing both
    printed every failure twice."""
    return event.state in JOB_ENDS and event.elapsed > 0


@dataclass
class LogLines:
    """One line per state change: for CI logs, files and pipes."""

    out: TextIO = field(default_factory=lambda: sys.stderr)

    def __call__(self, event: Event) -> None:
        if event.state == "tick" or job_end(event):
            return
        stamp = time.strftime("%H:%M:%S")
        detail = f"  {shown(event.detail)}" if event.detail else ""
        elapsed = f" ({event.elapsed:.0f}s)" if event.elapsed else ""
        self.out.write(
            f"{stamp} {event.scene:<20} {event.state:<12} {event.provider}{elapsed}{detail}\n"
        )
        self.out.flush()


@dataclass
class LiveLines:
    """A live line per running scene, redrawn in place; finished scenes scroll above it."""

    out: TextIO = field(default_factory=lambda: sys.stderr)
    running: dict[str, tuple[str, str, float]] = field(default_factory=dict)
    drawn: int = 0

    def __call__(self, event: Event) -> None:
        if job_end(event):
            return
        self._clear()
        if event.state in ACTIVE:
            started = self.running.get(event.scene, ("", "", time.monotonic()))[2]
            self.running[event.scene] = (event.state, event.provider, started)
        elif event.state != "tick":
            self.running.pop(event.scene, None)
            detail = f"  {shown(event.detail)}" if event.detail else ""
            self.out.write(f"  {event.scene:<20} {event.state:<12} {event.provider}{detail}\n")
        self._draw()

    def _clear(self) -> None:
        if self.drawn:
            self.out.write(f"\x1b[{self.drawn}F\x1b[J")
            self.drawn = 0

    def _draw(self) -> None:
        now = time.monotonic()
        for scene, (state, provider, started) in sorted(self.running.items()):
            self.out.write(
                f"  \x1b[1m{scene:<20}\x1b[0m {state:<12} {provider:<10} {now - started:5.0f}s\n"
            )
        self.drawn = len(self.running)
        self.out.flush()


def quiet(event: Event) -> None:
    pass
