"""Render benchmarks against the loopback provider emulator.

    .venv/bin/python bench/render.py [--only fanout,chain,noop,memory]

- fanout: 100 independent scenes, 2 s simulated jobs, concurrency 20 (ideal: 10 s; target 1.05x),
          three runs, their median
- chain:  10 chained scenes, 1 s jobs, real MP4s, last frames extracted and sent (target 1.15x)
- noop:   a rerun of a rendered 1,000-scene storyboard, as a fresh `hailuo-pipe render`
          process (target: <= 1 s wall, zero requests)
- memory: 200 scenes whose outputs are 20 MB each; peak RSS of the render process (<= 200 MB)
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx  # noqa: F401
import jsonschema  # noqa: F401
from PIL import Image

from hailuo_emulator import Emulator, run_emulator
from hailuo_pipe.render import RenderOptions, render
from hailuo_pipe.validate import load_storyboard

# httpx and jsonschema are loaded above, before any clock starts: a first render's process
# loads them at start, but the library loads them only on first use, and loading modules is the
# process's start-up (which `noop` measures), not the render's work


def create_cost(folder: Path, files: int = 200) -> str:
    """What creating an empty file costs in `folder`, in CPU (the kernel's included): printed
    beside a render's figures, as a render creates three files a scene. On the development
    machine it went from 15 to 930 us from one minute to the next (bench/README.md, session
    13): a figure taken meanwhile says so."""
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        start = time.process_time()
        for i in range(files):
            os.close(os.open(os.path.join(tmp, str(i)), os.O_CREAT | os.O_WRONLY, 0o644))
        took = (time.process_time() - start) / files
    return f"creating a file there costs {took * 1e6:.0f} us of CPU"


def env_for(emu: Emulator) -> dict[str, str]:
    """Every hosted provider's key and base URL variables, pointed at the emulator."""
    from hailuo_pipe import providers

    out = {}
    for name in providers.PROVIDER_NAMES:
        cls = providers.get(name)
        if not cls.local:
            out[cls.key_variable()] = emu.key
            out[cls.url_variable()] = emu.url
    return out


def process_env(emu: Emulator) -> dict[str, str]:
    """The environment of a render run as its own process (a CLI render's, or a timed worker's)."""
    return {**os.environ, **env_for(emu)}


def independent(n: int, provider: str = "wavespeed") -> str:
    scenes = "".join(
        f'  - id: s{i:04d}\n    prompt: "[Static shot] scene {i}"\n'
        f"    image: https://example.com/frames/{i}.jpg\n"
        for i in range(n)
    )
    return f"version: 1\nname: bench\ndefaults:\n  provider: {provider}\nscenes:\n{scenes}"


def chain(n: int) -> str:
    scenes = '  - id: s00\n    prompt: "[Aerial dive] start"\n    image: assets/first.png\n'
    scenes += "".join(
        f'  - id: s{i:02d}\n    prompt: "[Tracking shot] step {i}"\n'
        f"    image: {{from: s{i - 1:02d}, frame: last}}\n"
        for i in range(1, n)
    )
    return f"version: 1\nname: chain\ndefaults:\n  provider: runware\nscenes:\n{scenes}"


def write(root: Path, text: str) -> Path:
    (root / "assets").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (640, 360), (40, 60, 110)).save(root / "assets" / "first.png")
    spec = root / "bench.yaml"
    spec.write_text(text)
    return spec


def timed_render(spec: Path, emu: Emulator, concurrency: int) -> float:
    options = RenderOptions(environ=env_for(emu), concurrency=concurrency)  # off the clock
    start = time.perf_counter()
    result = render(load_storyboard(spec), options)
    wall = time.perf_counter() - start
    bad = [r for r in result.results if r.outcome != "rendered"]
    assert not bad, bad[:3]
    return wall


FANOUT_RUNS = 3  # one run varies by a few percent on a shared machine: the median of three


def fanout() -> None:
    walls, polls = [], []
    for _ in range(FANOUT_RUNS):
        with tempfile.TemporaryDirectory() as tmp, run_emulator(job_seconds=2.0) as emu:
            emu.warm()
            spec = write(Path(tmp), independent(100))
            walls.append(timed_render(spec, emu, concurrency=20))
            polls.append(len(emu.requests("poll")) / 100)
    median = sorted(walls)[len(walls) // 2]
    print(
        f"fanout: 100 scenes x 2 s jobs, concurrency 20: median wall {median:.2f} s = "
        f"{median / 10:.3f} x ideal 10 s (target <= 1.05); runs "
        f"{', '.join(f'{w / 10:.3f}' for w in walls)}; {statistics.mean(polls):.1f} polls/job"
    )


def chained() -> None:
    with tempfile.TemporaryDirectory() as tmp, run_emulator(job_seconds=1.0) as emu:
        emu.warm()
        spec = write(Path(tmp), chain(10))
        wall = timed_render(spec, emu, concurrency=4)
        print(
            f"chain: 10 chained scenes x 1 s jobs, real MP4s: wall {wall:.2f} s = "
            f"{wall / 10:.3f} x ideal 10 s (target <= 1.15)"
        )


def noop() -> None:
    with tempfile.TemporaryDirectory() as tmp, run_emulator(job_seconds=0.05) as emu:
        emu.warm()
        spec = write(Path(tmp), independent(1000, provider="runware"))
        setup = timed_render(spec, emu, concurrency=64)
        before = len(emu.requests())
        env = process_env(emu)
        walls = []
        for _ in range(3):
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "hailuo_pipe", "render", "--quiet", str(spec)],
                env=env,
                capture_output=True,
                text=True,
            )
            walls.append(time.perf_counter() - start)
            assert done.returncode == 0, done.stderr
        sent = len(emu.requests()) - before
        print(
            f"noop: rerun of 1,000 rendered scenes (first render took {setup:.1f} s): "
            f"best wall {min(walls):.2f} s, median {sorted(walls)[1]:.2f} s, "
            f"{sent} requests (target <= 1 s, 0 requests)"
        )


def memory() -> None:
    size = 20 * 1024 * 1024
    with (
        tempfile.TemporaryDirectory() as tmp,
        run_emulator(job_seconds=0.2, output_bytes=size) as emu,
    ):
        spec = write(Path(tmp), independent(200, provider="runware"))
        env = process_env(emu)
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "hailuo_pipe", "render", "--quiet", "-j", "20", str(spec)],
            env=env,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - start
        assert done.returncode == 0, done.stderr
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        total = sum(p.stat().st_size for p in (Path(tmp) / "renders").rglob("*.mp4"))
        print(
            f"memory: 200 scenes x 20 MB outputs ({total / 1e9:.1f} GB downloaded in "
            f"{wall:.1f} s): peak RSS of the render process {peak_mb:.0f} MB "
            "(target <= 200 MB)"
        )


BENCHES = {"fanout": fanout, "chain": chained, "noop": noop, "memory": memory}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default=",".join(BENCHES))
    for name in parser.parse_args().only.split(","):
        BENCHES[name]()


if __name__ == "__main__":
    main()
