"""What a render tells its caller: an event per change of a scene, a result per scene at the end."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from hailuo_pipe.errors import HailuoPipeError, OutputExpired
from hailuo_pipe.state.lockfile import Entry
from hailuo_pipe.storyboard.model import Scene


@dataclass(frozen=True)
class Event:
    """Progress of one scene, for whoever displays it."""

    scene: str
    state: str  # waiting | submitting | submitted | queued | running | downloading | done | ...
    provider: str
    detail: str = ""
    elapsed: float = 0.0


# failed: its own error; skipped: something it needs failed; interrupted: stopped by Ctrl-C
# or SIGTERM while under way; not started: the render stopped before it began
FAILED = ("failed", "skipped")
STOPPED = ("interrupted", "not started")


@dataclass(frozen=True)
class SceneResult:
    scene: str
    outcome: str  # reused | rendered | resumed | fetched | failed | skipped | interrupted | ...
    cost: float = 0.0
    error: str | None = None
    job_id: str | None = None
    in_flight: float = 0.0  # the price of its job, still running at the provider
    hint: str | None = None  # what the user can do about a failure


@dataclass(frozen=True)
class RenderResult:
    results: tuple[SceneResult, ...]
    interrupted: bool = False
    cut: str | None = None  # path of the assembled cut, when the storyboard declares one
    planned: float = 0.0  # what the plan priced the run at
    cut_skipped: str | None = None  # why the storyboard's cut was not assembled

    @property
    def failed(self) -> list[SceneResult]:
        return [r for r in self.results if r.outcome in FAILED]

    @property
    def spent(self) -> float:
        return _total(r.cost for r in self.results)

    @property
    def in_flight(self) -> float:
        return _total(r.in_flight for r in self.results)


def _total(amounts: Iterable[float]) -> float:
    """Dollars added as decimals: 0.23 + 0.46 is 0.69, not 0.6900000000000001."""
    return float(sum((Decimal(str(a)) for a in amounts), Decimal(0)))


def summary_line(result: RenderResult) -> str:
    counts: dict[str, int] = {}
    for r in result.results:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    parts = [f"{n} {k}" for k, n in sorted(counts.items())]
    spend = f"spent ${result.spent:.2f} (planned ${result.planned:.2f})"
    if result.in_flight:
        spend += f", ${result.in_flight:.2f} in flight"
    return f"{', '.join(parts)}; {spend}"


def hint(scene: Scene, entry: Entry | None, err: HailuoPipeError) -> str | None:
    """What to do about a scene's failure, from what the lockfile now says of it."""
    if isinstance(err, OutputExpired):
        return (
            f"the clip is gone at the provider: take it from a shared cache (hailuo-pipe cache "
            f"pull) if one has it, or pay for it again with --force {scene.id}"
        )
    if entry is None:
        return None
    if entry.state == "failed":
        return "render again to retry it (a new, paid job), or change the scene first"
    if entry.state == "submitted":
        return f"job {entry.job_id} is recorded: render again to resume it (free)"
    if entry.state == "done":
        return f"its clip is recorded: render again to fetch it (free), or --force {scene.id}"
    return None  # submitting / unknown: the error itself names --adopt and --resubmit
