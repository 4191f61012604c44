"""How a render's cost grows with its size: 100 / 1,000 / 10,000 scenes against the emulator.

    .venv/bin/python bench/scale.py [--sizes 100,1000] [--concurrency 100] [--validate 10000]
    .venv/bin/python bench/scale.py --sizes 10000          # about ten minutes

For each size: a render of N independent scenes x 1 s emulator jobs at concurrency 100, in a
process of its own (so its peak RSS is its own), with
- wall time and x ideal (ideal = waves x job time, waves = ceil(N / concurrency));
- lockfile writes and the bytes written to the lockfile and its journal, counted by wrapping
  the lockfile module's write functions in that process (not estimated);
- the final lockfile's size and the render process's peak RSS;
then three no-op reruns as fresh `hailuo-pipe render` processes: the first rerun after the
render, and the steady one (the best of the next two), with the requests they sent (0).
Last, `hailuo-pipe validate` of a fresh 10,000-scene storyboard (bench/validate.py's: templated
prompts, chains of ten, five providers) in a fresh process with no memo: validate cold.

Every measurement prints the 1-minute load average first: the development machine has two
CPUs that other work shares, and a figure taken under load says so.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))  # render.py and validate.py, as modules

JOB_SECONDS = 1.0


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f} (5 min {five:.2f})"


# -- the render, in a process of its own -------------------------------------------------------


def _counting() -> dict[str, int]:
    """Wrap every function through which the lockfile module writes its files (whichever this
    version has) so that each call and its bytes are counted, and the slowest timed: an append
    made on the event loop that waits on the disk holds up every scene for as long."""
    from hailuo_pipe.state import lockfile

    counts = {"writes": 0, "bytes": 0, "journal_writes": 0, "journal_bytes": 0, "slowest_ms": 0}

    def wrap(name: str, calls: str, size: str) -> None:
        real = getattr(lockfile, name, None)
        if real is None:
            return

        def counted(path: Path, data: bytes, *args: Any, **kw: Any) -> Any:
            counts[calls] += 1
            counts[size] += len(data)
            start = time.perf_counter()
            try:
                return real(path, data, *args, **kw)
            finally:
                took = round((time.perf_counter() - start) * 1000)
                counts["slowest_ms"] = max(counts["slowest_ms"], took)

        setattr(lockfile, name, counted)

    wrap("write_lockfile", "writes", "bytes")  # the whole file, atomically
    wrap("append_journal", "journal_writes", "journal_bytes")  # a group commit's lines
    compact = getattr(lockfile.Lockfile, "compact", None)
    if compact is not None:  # how long folding the journal in takes, at the end
        counts["compact_ms"] = 0

        def timed(self: Any) -> None:
            start = time.perf_counter()
            try:
                compact(self)
            finally:
                counts["compact_ms"] += round((time.perf_counter() - start) * 1000)

        lockfile.Lockfile.compact = timed  # type: ignore[method-assign]
    return counts


def worker(spec: str, concurrency: int) -> None:
    """Render `spec` and print one JSON line of figures (run by `timed_render`). The keys and
    URLs come in the environment, as a CLI render has them: working them out here would load
    every provider's module (the preview's loads PyAV and Pillow) on the render's clock."""
    import httpx  # noqa: F401  loaded before the clock, as a CLI process has them at start
    import jsonschema  # noqa: F401

    from hailuo_pipe.render import RenderOptions, render
    from hailuo_pipe.validate import load_storyboard

    counts = _counting()
    options = RenderOptions(environ=dict(os.environ), concurrency=concurrency)
    began = time.time()  # the wall clock the emulator's request log uses (bench/timeline.py)
    start, loop_start = time.perf_counter(), time.thread_time()
    result = render(load_storyboard(Path(spec)), options)
    wall, loop_cpu = time.perf_counter() - start, time.thread_time() - loop_start
    bad = [r for r in result.results if r.outcome != "rendered"]
    assert not bad, bad[:3]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cpu = time.process_time()
    figures = {"wall": wall, "began": began, "rss_mb": rss, "cpu": cpu, "loop_cpu": loop_cpu}
    print(json.dumps({**figures, **counts}))


def timed_render(spec: Path, env: dict[str, str], concurrency: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", str(spec), str(concurrency)]
    if profile := os.environ.get("SCALE_PROFILE"):  # collapsed stacks of every thread
        spy = Path(sys.executable).with_name("py-spy")
        gil = ["--gil"] if os.environ.get("SCALE_PROFILE_GIL") else []  # GIL holders only
        cmd = [
            str(spy),
            "record",
            "-r",
            "250",
            "--nonblocking",
            *gil,
            "-f",
            "raw",
            "-o",
            profile,
            "--",
            *cmd,
        ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    [line] = [x for x in done.stdout.splitlines() if x.startswith("{")]
    figures: dict[str, Any] = json.loads(line)
    return figures


def rerun(spec: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "hailuo_pipe", "render", "--quiet", str(spec)],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-3000:]
    return wall


def emulator_cpu() -> float:
    """CPU seconds used so far by the emulator processes this benchmark started (its
    children running hailuo_emulator), read from /proc; 0 where there is no /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) != os.getpid():  # field 4, the parent
                continue
            if b"hailuo_emulator" not in (stat.parent / "cmdline").read_bytes():
                continue
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return total


def journal_of(lock: Path) -> list[Path]:
    return [p for p in lock.parent.iterdir() if p.name.startswith(lock.name) and p != lock]


def size(n: int, concurrency: int, keep: Path | None = None) -> dict[str, Any]:
    from render import create_cost, independent, process_env, write

    from hailuo_emulator import run_emulator

    with tempfile.TemporaryDirectory() as tmp, run_emulator(job_seconds=JOB_SECONDS) as emu:
        emu.warm()
        root = keep / str(n) if keep is not None else Path(tmp)
        spec = write(root, independent(n))
        lock = spec.with_suffix(".lock")
        print(f"  render {n:,} x {JOB_SECONDS:g} s, concurrency {concurrency}: {load()}")
        print(f"    in {root}: {create_cost(root)}")
        emu_cpu = emulator_cpu()
        env = process_env(emu)
        got = timed_render(spec, env, concurrency)
        emu_cpu = emulator_cpu() - emu_cpu
        kinds = Counter(r["kind"] for r in emu.requests())
        ideal = math.ceil(n / concurrency) * JOB_SECONDS
        final = lock.stat().st_size
        written = got["bytes"] + got["journal_bytes"]
        figures = {
            "scenes": n,
            "wall": got["wall"],
            "x_ideal": got["wall"] / ideal,
            "ideal": ideal,
            "cpu": got["cpu"],
            "emulator_cpu": emu_cpu,
            "loop_cpu": got["loop_cpu"],
            "writes": got["writes"],
            "journal_writes": got["journal_writes"],
            "written_mb": written / 1e6,
            "final_mb": final / 1e6,
            "written_x_final": written / final,
            "rss_mb": got["rss_mb"],
            "compact_ms": got.get("compact_ms"),
            "slowest_write_ms": got.get("slowest_ms"),
            "requests_per_job": {k: round(v / n, 2) for k, v in sorted(kinds.items())},
            "left_beside_lockfile": [p.name for p in journal_of(lock)],
        }
        _show_render(figures)
        before = len(emu.requests())
        print(f"  no-op reruns: {load()}")
        walls = [rerun(spec, env) for _ in range(3)]
        figures.update(
            first_rerun=walls[0],
            steady_rerun=min(walls[1:]),
            rerun_requests=len(emu.requests()) - before,
        )
        print(
            f"    first rerun after the render {walls[0]:.2f} s, steady {min(walls[1:]):.2f} s "
            f"({walls[0] / min(walls[1:]):.2f}x), {figures['rerun_requests']} requests"
        )
        return figures


def _show_render(f: dict[str, Any]) -> None:
    print(
        f"    wall {f['wall']:.1f} s = {f['x_ideal']:.3f} x ideal {f['ideal']:.0f} s "
        f"(CPU: render process {f['cpu']:.1f} s, its event loop {f['loop_cpu']:.1f} s, "
        f"emulator {f['emulator_cpu']:.1f} s); "
        f"lockfile writes {f['writes']}, journal writes {f['journal_writes']} "
        f"(the slowest {f['slowest_write_ms']} ms); "
        f"bytes written {f['written_mb']:.2f} MB = "
        f"{f['written_x_final']:.2f} x the final lockfile ({f['final_mb']:.2f} MB); "
        f"peak RSS {f['rss_mb']:.0f} MB (the render's process; frame workers not counted); "
        f"folding the journal in {f['compact_ms']} ms; "
        "left beside the lockfile: "
        f"{f['left_beside_lockfile'] or 'nothing'}; requests per job {f['requests_per_job']}"
    )


# -- validate cold -----------------------------------------------------------------------------


def validate_cold(n: int) -> dict[str, Any]:
    from PIL import Image
    from validate import storyboard

    walls = []
    print(f"  validate {n:,} scenes cold (fresh folder, fresh process, no memo): {load()}")
    for _ in range(3):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "assets").mkdir()
            Image.new("RGB", (1280, 720), (40, 60, 110)).save(root / "assets" / "first.png")
            spec = root / "bench.yaml"
            spec.write_text(storyboard(n))
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "hailuo_pipe", "validate", str(spec)],
                capture_output=True,
                text=True,
            )
            walls.append(time.perf_counter() - start)
            assert done.returncode == 0, done.stderr[-3000:]
    print(f"    best {min(walls):.2f} s, runs {', '.join(f'{w:.2f}' for w in walls)}")
    return {"validate_scenes": n, "validate_cold": min(walls), "validate_runs": walls}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        spec, concurrency = sys.argv[2:4]
        worker(spec, int(concurrency))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,1000", help="scene counts, comma-separated")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--validate", type=int, default=10000, help="0: skip validate cold")
    parser.add_argument("--json", metavar="FILE", help="also write the figures there")
    parser.add_argument("--keep", metavar="DIR", type=Path, help="render in DIR/N, kept")
    args = parser.parse_args()
    out: dict[str, Any] = {"sizes": []}
    for n in (int(s) for s in args.sizes.split(",") if s):
        print(f"{n:,} scenes")
        out["sizes"].append(size(n, args.concurrency, args.keep))
    if args.validate:
        out.update(validate_cold(args.validate))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
