"""How many polls a job costs and how late its end is seen: a real render against the emulator.

    .venv/bin/python bench/polling.py --jobs 100 --concurrency 20 --seconds 20
    .venv/bin/python bench/polling.py --provider fal,replicate --jobs 40 --seconds 5

Renders `--jobs` independent scenes of each `--provider` (default wavespeed) whose jobs last
`--seconds`, `--concurrency` at a time, through the executor (its DurationEstimator and
wake-ups included). A job's requests are its polls as the emulator logged them (fal's status
and result both count); its detection delay is the time from the job's end (the emulator's
receipt of the submit plus its length) to the executor seeing it succeeded.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from hailuo_emulator import run_emulator
from hailuo_pipe.render import Event, RenderOptions, render
from hailuo_pipe.validate import load_storyboard

sys.path.insert(0, str(Path(__file__).parent))
from render import env_for, independent, write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--provider", default="wavespeed", help="comma-separated; each is benchmarked in turn"
    )
    args = parser.parse_args()
    for provider in args.provider.split(","):
        bench(provider.strip(), args)


def bench(provider: str, args: argparse.Namespace) -> None:
    seen: dict[str, float] = {}

    def on_event(event: Event) -> None:
        if event.state == "succeeded":
            seen[event.scene] = time.time()

    with tempfile.TemporaryDirectory() as tmp, run_emulator(job_seconds=args.seconds) as emu:
        emu.warm()
        board = load_storyboard(write(Path(tmp), independent(args.jobs, provider)))
        started = time.monotonic()
        render(
            board,
            RenderOptions(environ=env_for(emu), concurrency=args.concurrency, on_event=on_event),
        )
        wall = time.monotonic() - started
        log, jobs = emu.requests(), emu.job_list()
    scene_of = {job["id"]: _scene(job["body"]) for job in jobs}
    ends = {_scene(r["body"]): r["t"] + args.seconds for r in log if r["kind"] == "submit"}
    polls = dict.fromkeys(ends, 0)
    for req in log:
        if req["kind"] == "poll":
            where = req["path"] + str(req["query"])  # MiniMax asks by a query parameter
            polls[next(scene_of[j] for j in scene_of if j in where)] += 1
    order = sorted(ends, key=lambda s: ends[s])
    first = order[: args.concurrency]
    delays = {s: seen[s] - ends[s] for s in order}
    print(
        f"{provider}: {args.jobs} jobs of {args.seconds:g} s, {args.concurrency} at a time, "
        f"in {wall:.1f} s\n"
        f"  polls per job:    mean {statistics.mean(polls.values()):.2f}  "
        f"max {max(polls.values())}  (first wave {statistics.mean(polls[s] for s in first):.2f})"
        " (+ 1 submit, 1 download)\n"
        f"  detection delay:  mean {statistics.mean(delays.values()):.3f} s  "
        f"max {max(delays.values()):.3f} s  "
        f"(first wave {statistics.mean(delays[s] for s in first):.3f} s)"
    )


def _scene(body: object) -> str:
    number = int(re.search(r"scene (\d+)", str(body))[1])  # type: ignore[index]
    return f"s{number:04d}"


if __name__ == "__main__":
    main()
