"""Where a render's time over the ideal goes: one render of N independent scenes x 1 s jobs,
split by the emulator's own request log into its start, each wave's lag and its tail.

    .venv/bin/python bench/timeline.py [--scenes 1000] [--concurrency 100] [--runs 1]

For every job (the emulator's job list, oldest first; it ends 1 s after it was created):
- detection: from its end to the first poll of it that came after the end;
- next submit: the slot a job frees is taken by the job created `concurrency` places later, so
  from this job's detection to that job's creation (a wave's jobs end in the order they began);
- the start: from the render's call to the first job; the tail: from the last job's end to the
  render's return (the last poll, download, frames and the fold of the journal).
A slot's lag is its detection plus its next submit; the slowest slot sets the wall.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

JOB_SECONDS = 1.0


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def spread(values: list[float]) -> str:
    values = sorted(v for v in values if not math.isnan(v))  # a job no poll saw after its end
    if not values:
        return "-"
    p90 = values[min(len(values) - 1, int(len(values) * 0.9))]
    return f"median {ms(statistics.median(values))} ms, p90 {ms(p90)} ms, max {ms(values[-1])} ms"


def analyse(
    figures: dict[str, Any], jobs: list[dict[str, Any]], log: list[dict[str, Any]], concurrency: int
) -> None:
    began, wall = figures["began"], figures["wall"]
    polls: dict[str, list[float]] = defaultdict(list)
    downloads: list[float] = []
    for request in log:
        if request["kind"] == "poll":
            for job in request["path"].split("/"):
                polls[job].append(request["t"])
        elif request["kind"] == "download":
            downloads.append(request["t"])
    created = [job["created"] for job in jobs]
    detected = []
    for job in jobs:
        end = job["created"] + JOB_SECONDS
        after = [t for t in polls.get(job["id"], []) if t >= end]
        detected.append(min(after) if after else float("nan"))
    detection = [d - (c + JOB_SECONDS) for c, d in zip(created, detected, strict=True)]
    refill = [created[k + concurrency] - detected[k] for k in range(len(jobs) - concurrency)]
    waves = len(jobs) // concurrency
    ideal = waves * JOB_SECONDS
    last_end = max(created) + JOB_SECONDS
    print(f"  wall {wall:.2f} s = {wall / ideal:.3f} x ideal; over the ideal {wall - ideal:.2f} s:")
    print(f"    start, to the first job: {ms(min(created) - began)} ms")
    for w in range(waves):
        wave = created[w * concurrency : (w + 1) * concurrency]
        print(
            f"    wave {w + 1:2d}: jobs created over {ms(max(wave) - min(wave)):>4} ms, "
            f"its last {ms(max(wave) - began - w * JOB_SECONDS):>5} ms after the ideal's"
        )
    print(f"    detection, a job's end to the poll that saw it: {spread(detection)}")
    print(f"    next submit, that poll to the next job in its slot: {spread(refill)}")
    print(
        f"    tail, the last job's end to the render's return: {ms(began + wall - last_end)} ms "
        f"(its last download {ms(max(downloads) - last_end)} ms after that end)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenes", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()

    from render import create_cost, independent, process_env, write
    from scale import load, timed_render

    from hailuo_emulator import run_emulator

    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp, run_emulator(job_seconds=JOB_SECONDS) as emu:
            emu.warm()
            spec = write(Path(tmp), independent(args.scenes))
            print(
                f"render {args.scenes:,} x {JOB_SECONDS:g} s, concurrency {args.concurrency}: "
                f"{load()}; {create_cost(Path(tmp))}"
            )
            figures = timed_render(spec, process_env(emu), args.concurrency)
            jobs = emu.job_list()
            analyse(figures, jobs, emu.requests(), args.concurrency)


if __name__ == "__main__":
    main()
