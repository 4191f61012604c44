"""Start-up time of the CLI: `hailuo-pipe --help`, `--version` and `render --help`, each a fresh
process, against `python -c pass` (the floor every command pays).

Prints the median of N runs (default 20) of each, and the difference to the floor. Issue 17's
target: `--help` <= 0.08 s. Run after `make bytecode` (an editable install is not compiled).

    python bench/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET = 0.08  # seconds, issue 17


def once(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def medians(cases: dict[str, list[str]], runs: int) -> dict[str, float]:
    """Round-robin over the cases, so that a slower spell of a shared machine weighs on all
    of them alike rather than on whichever ran during it."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, argv in cases.items():
            times[name].append(once(argv))
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    python = sys.executable
    script = shutil.which("hailuo-pipe", path=str(Path(python).parent)) or ""
    cases = {
        "python -c pass": [python, "-c", "pass"],
        # the floor of any click command: what is left above it is hailuo-pipe's own
        "python -c 'import click'": [python, "-c", "import click"],
        "python -m hailuo_pipe --help": [python, "-m", "hailuo_pipe", "--help"],
        "python -m hailuo_pipe --version": [python, "-m", "hailuo_pipe", "--version"],
        "python -m hailuo_pipe render --help": [python, "-m", "hailuo_pipe", "render", "--help"],
    }
    if script:
        cases["hailuo-pipe --help (installed script)"] = [script, "--help"]
    got = medians(cases, args.runs)
    floor = got["python -c pass"]
    print(f"median of {args.runs} runs, wall time of a fresh process")
    for name, median in got.items():
        extra = "" if name == "python -c pass" else f"  (+{median - floor:.3f} s over it)"
        print(f"  {name:<40} {median:.3f} s{extra}")
    help_time = got["python -m hailuo_pipe --help"]
    verdict = "meets" if help_time <= TARGET else "misses"
    print(f"--help: {help_time:.3f} s, {verdict} the target of {TARGET:.2f} s")


if __name__ == "__main__":
    main()
