"""How many polls a job costs and how late its end is seen, against the emulator.

    .venv/bin/python bench/polling.py --jobs 100 --concurrency 20 --seconds 20

Jobs run `--concurrency` at a time (like `render --concurrency`); every finished job feeds the
DurationEstimator, as the executor does, so later jobs poll on the learnt schedule.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass

import httpx

from hailuo_pipe.emulator import run_emulator
from hailuo_pipe.polling import DurationEstimator
from hailuo_pipe.providers.wavespeed import WaveSpeedProvider
from hailuo_pipe.storyboard import Scene

SCENE = Scene("bench", "A harbor at dawn", "wavespeed", 6, "768p", False)


@dataclass(frozen=True)
class Result:
    polls: int
    delay: float


async def one_job(
    provider: WaveSpeedProvider,
    client: httpx.AsyncClient,
    estimator: DurationEstimator,
    seconds: float,
) -> Result:
    request = provider.build_request(SCENE, {})
    job_id = await provider.submit(client, request, "key")
    started = time.monotonic()
    schedule = estimator.schedule(provider.name)
    polls = 0
    while True:
        elapsed = time.monotonic() - started
        status = await provider.poll(client, job_id)
        polls += 1
        if status.terminal:
            estimator.observe(provider.name, elapsed)
            return Result(polls, time.monotonic() - started - seconds)
        await asyncio.sleep(schedule.next_delay(elapsed))


async def bench(url: str, key: str, jobs: int, concurrency: int, seconds: float) -> list[Result]:
    provider = WaveSpeedProvider(base_url=url, api_key=key)
    estimator = DurationEstimator()
    slots = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency * 2)

    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def slot() -> Result:
            async with slots:
                return await one_job(provider, client, estimator, seconds)

        return await asyncio.gather(*(slot() for _ in range(jobs)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    with run_emulator(job_seconds=args.seconds) as emu:
        started = time.monotonic()
        results = asyncio.run(bench(emu.url, emu.key, args.jobs, args.concurrency, args.seconds))
        wall = time.monotonic() - started
        served = len(emu.requests("poll"))
    polls = [r.polls for r in results]
    delays = [r.delay for r in results]
    first = results[: args.concurrency]
    print(
        f"{args.jobs} jobs of {args.seconds:g} s, {args.concurrency} at a time, in {wall:.1f} s\n"
        f"  requests per job:  mean {statistics.mean(polls):.2f}  max {max(polls)}"
        f"  (first wave {statistics.mean(r.polls for r in first):.2f})\n"
        f"  detection delay:   mean {statistics.mean(delays):.3f} s  max {max(delays):.3f} s"
        f"  (first wave {statistics.mean(r.delay for r in first):.3f} s)\n"
        f"  polls served by the emulator: {served}"
    )


if __name__ == "__main__":
    main()
