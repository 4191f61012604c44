"""Showing a render as it happens: a live table on a terminal, plain log lines elsewhere.

Both read the same two callbacks of `render`: `on_plan` (every scene, its action and price,
and the state its lockfile entry records) and `on_event` (each change of a scene's state). Both
show the same header,

    4/7 done · 2 running · $0.92 spent · $0.56 in flight · ETA ~1m40

where `spent` is what this run's finished new jobs cost by the plan's prices, `in flight` the
price of jobs running at a provider now (paid, and resumed by the next render if this one
stops), and the ETA comes from the durations of this run's finished jobs, learnt per provider by
the same estimator that times the polls. A scene shows the state its entry records until an
event changes it: a job recorded `submitted` shows `submitted`, not `submitting`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from hailuo_pipe.redact import shown
from hailuo_pipe.render.polling import DurationEstimator

if TYPE_CHECKING:
    from hailuo_pipe.plan import Plan
    from hailuo_pipe.render.events import Event

ACTIVE = {"submitting", "submitted", "queued", "running", "downloading", "waiting"}
AT_PROVIDER = {"submitted", "queued", "running"}  # a job exists there and is not over
FINAL = {"done", "reused", "restored", "failed", "skipped", "interrupted", "not started"}
JOB_ENDS = {"succeeded", "failed"}
PAID_ACTIONS = {"create", "replace", "retry", "resume"}  # a job of it may run at a provider
HEARTBEAT = 30.0  # seconds between two count lines in a log


def job_end(event: Event) -> bool:
    """The poll's report that a job ended at the provider (it carries the job's age): the
    scene's own outcome follows at once (`done`, or `failed` with the error), so showing both
    printed every failure twice."""
    return event.state in JOB_ENDS and event.elapsed > 0


@dataclass
class Row:
    """One scene as the display knows it."""

    scene: str
    provider: str
    action: str
    price: float  # of a job of this scene at its provider
    state: str
    detail: str = ""
    since: float | None = None  # monotonic time its current job or step began


@dataclass
class Progress:
    """The counts behind the header, kept from the plan and the events (no I/O)."""

    concurrency: int = 4
    clock: Callable[[], float] = time.monotonic
    rows: dict[str, Row] = field(default_factory=dict)
    spent: float = 0.0
    estimator: DurationEstimator = field(default_factory=DurationEstimator)

    def seed(self, rows: Iterable[Row]) -> None:
        for row in rows:
            self.rows[row.scene] = row

    def plan(self, plan: Plan) -> None:
        self.seed(rows_of(plan))

    def apply(self, event: Event) -> Row | None:
        """Take in one event; returns the row it changed (None for ticks and job ends)."""
        if event.state == "tick" or not event.scene:
            return None
        row = self.rows.get(event.scene)
        if row is None:  # a scene the plan did not show (never expected): show it anyway
            row = self.rows[event.scene] = Row(event.scene, event.provider, "", 0.0, "waiting")
        if event.state in JOB_ENDS and event.elapsed > 0:
            if event.state == "succeeded":
                self.estimator.observe(event.provider, event.elapsed)
            return None
        if event.state == "warning":
            return row
        if event.state == "done":
            if event.elapsed > 0:  # a local render: its own time is its duration
                self.estimator.observe(event.provider, event.elapsed)
            if row.action in PAID_ACTIONS - {"resume"} and "shared cache" not in event.detail:
                self.spent = _add(self.spent, row.price)
        if event.state in ACTIVE and (
            row.since is None or row.state not in ACTIVE or event.state == "submitting"
        ):
            row.since = self.clock() - event.elapsed  # a resumed job's age counts from its submit
        row.state, row.detail = event.state, event.detail
        return row

    # -- the header ------------------------------------------------------------------------

    @property
    def total(self) -> int:
        return len(self.rows)

    @property
    def done(self) -> int:
        return sum(1 for r in self.rows.values() if r.state in FINAL)

    @property
    def running(self) -> int:
        return sum(1 for r in self.rows.values() if r.state in ACTIVE - {"waiting"})

    @property
    def in_flight(self) -> float:
        total = 0.0
        for r in self.rows.values():
            if r.state in AT_PROVIDER and r.action in PAID_ACTIONS:
                total = _add(total, r.price)
        return total

    def eta(self) -> float | None:
        """Seconds until the scenes not yet finished are, from this run's job durations: the
        longer of the slowest running job's remainder and the work left spread over the slots.
        None while no job of a provider still to be waited on has finished."""
        now = self.clock()
        left: list[float] = []
        waiting = 0.0
        for r in self.rows.values():
            if r.state in FINAL:
                continue
            known = self.estimator.estimate(r.provider)
            if known is None:
                return None
            if r.state in ACTIVE and r.since is not None:
                left.append(max(0.0, known.typical - (now - r.since)))
            else:
                waiting += known.typical
        if not left and not waiting:
            return 0.0
        return max(max(left, default=0.0), (sum(left) + waiting) / max(1, self.concurrency))

    def header(self) -> str:
        eta = self.eta()
        parts = [
            f"{self.done}/{self.total} done",
            f"{self.running} running",
            f"${self.spent:.2f} spent",
            f"${self.in_flight:.2f} in flight",
            f"ETA ~{_duration(eta)}" if eta is not None else "ETA ?",
        ]
        return " · ".join(parts)


def rows_of(plan: Plan) -> list[Row]:
    """Each scene of the plan as recorded: a resumed job shows its entry's state."""
    from hailuo_pipe import providers

    rows = []
    for step in plan.steps:
        scene = step.scene
        price = float(step.price)
        if step.action == "resume" and not price:
            price = float(providers.get(scene.provider)().price(scene))
        if step.action == "reuse":
            state = "reused"
        elif step.entry is not None and step.action == "resume":
            state = step.entry.state  # submitted, submitting or unknown: what the lock says
        else:
            state = "planned"
        rows.append(Row(scene.id, scene.provider, step.action, price, state))
    return rows


def _add(a: float, b: float) -> float:
    return round(a + b, 6)  # dollars: 0.23 + 0.46 shows 0.69, not 0.6900000000000001


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}"


# -- in a log ------------------------------------------------------------------------------


@dataclass
class LogLines:
    """A line per state change, and the header's counts every `heartbeat` seconds: for CI
    logs, files and pipes (nothing is redrawn, no terminal control is written)."""

    progress: Progress = field(default_factory=Progress)
    out: TextIO = field(default_factory=lambda: sys.stderr)
    heartbeat: float = HEARTBEAT
    last_beat: float | None = None

    def on_plan(self, plan: Plan) -> None:
        self.progress.plan(plan)

    def __call__(self, event: Event) -> None:
        now = self.progress.clock()
        if self.last_beat is None:
            self.last_beat = now
        row = self.progress.apply(event)
        if row is not None:
            stamp = time.strftime("%H:%M:%S")
            detail = f"  {shown(event.detail)}" if event.detail else ""
            elapsed = f" ({event.elapsed:.0f}s)" if event.elapsed else ""
            self.out.write(
                f"{stamp} {event.scene:<20} {event.state:<12} {event.provider}{elapsed}{detail}\n"
            )
        if now - self.last_beat >= self.heartbeat:
            self.last_beat = now
            self.out.write(f"{time.strftime('%H:%M:%S')} {self.progress.header()}\n")
        self.out.flush()

    def close(self) -> None:
        pass


# -- on a terminal -------------------------------------------------------------------------


@dataclass
class LiveTable:
    """A live table of the scenes under way under the header, redrawn in place (rich);
    each scene that finishes is printed once above it, so the scroll-back keeps the story."""

    progress: Progress = field(default_factory=Progress)
    console: Any = None
    live: Any = None

    def on_plan(self, plan: Plan) -> None:
        self.progress.plan(plan)

    def __call__(self, event: Event) -> None:
        row = self.progress.apply(event)
        live = self._live()
        if row is not None and (row.state in FINAL or event.state == "warning"):
            detail = f"  {shown(event.detail)}" if event.detail else ""
            style = "red" if row.state == "failed" else "yellow" if row.state != "done" else ""
            text = f"  {row.scene:<20} {event.state:<12} {row.provider}{detail}"
            live.console.print(text, style=style or None, markup=False, highlight=False)
        live.update(self.render(), refresh=True)

    def _live(self) -> Any:
        if self.live is None:
            from rich.console import Console
            from rich.live import Live

            self.console = self.console or Console(stderr=True)
            self.live = Live(
                self.render(), console=self.console, auto_refresh=False, transient=True
            )
            self.live.start()
        return self.live

    def render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        p = self.progress
        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        for name, justify in (("scene", "left"), ("state", "left"), ("provider", "left"),
                              ("time", "right"), ("", "left")):
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        now = p.clock()
        under_way = [r for r in p.rows.values() if r.state not in FINAL]
        under_way.sort(key=lambda r: (r.state not in ACTIVE, r.since or float("inf"), r.scene))
        room = max(3, (self.console.size.height if self.console else 24) - 6)
        for r in under_way[:room]:
            age = f"{now - r.since:.0f}s" if r.since is not None and r.state in ACTIVE else ""
            style = "bold" if r.state in ACTIVE - {"submitted", "waiting"} else "dim"
            table.add_row(r.scene, r.state, r.provider, age, shown(r.detail)[:60], style=style)
        if len(under_way) > room:
            table.add_row(f"… and {len(under_way) - room} more", "", "", "", "", style="dim")
        return Group(Text(p.header(), style="bold cyan"), table)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def quiet(event: Event) -> None:
    pass
