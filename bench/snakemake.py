"""Our no-op rerun side by side with `snakemake -n` on an equal pipeline (issue 17's target:
a no-op rerun of 10,000 scenes <= 1.5 s and <= 0.2 x `snakemake -n`, measured in one run).

    .venv/bin/python bench/snakemake.py [--sizes 1000,10000] [--rounds 5] [--keep DIR]

For each size N: a storyboard of N independent scenes (bench/render.py's `independent(n)`) is
rendered once against the emulator (1 s jobs, concurrency 100, as bench/scale.py does), then an
equal pipeline for snakemake is built in a folder beside it (`N.snakemake/` beside `N/`):

- a Snakefile with one wildcard rule, one job per scene, whose input is the file our render
  reads for that scene (the storyboard, `bench.yaml`: these scenes' images are URLs, so there
  is no local image to read) and whose outputs are the files our render wrote for it and
  records in the lockfile (`renders/bench/ID.mp4`, `ID.first.png`, `ID.last.png`), with a shell
  command that would produce them (`hailuo-pipe render --scene ID`), and a target rule `all`
  listing every output, the way a snakemake user would write it;
- snakemake's files are **hard links of our real ones** (the storyboard and the 3 x N
  outputs): the same inodes, so the same sizes and modification times, outputs newer than the
  input, and the same files a stat walks over; empty files would be as fair for snakemake
  (it looks at existence and mtimes only) but hard links leave nothing to argue about;
- the scene list is written into the Snakefile as a literal, so snakemake does not parse the
  storyboard, while our render does; and snakemake has no provenance records of these jobs in
  `.snakemake/metadata` (it says so: "N jobs have missing provenance/metadata"), which it would
  otherwise read per output. Both favour snakemake, so the ratio is an upper bound.

Then the two run alternately, each as a fresh process, `--rounds` times each (default 5): ours
`python -m hailuo_pipe render --quiet bench.yaml` (as bench/scale.py's `rerun`, checked to send
no request), theirs `snakemake -n --cores 1 -s Snakefile` in its folder (checked to say
"Nothing to be done"), after one untimed warm-up of each (making the hard links changed our
files' ctime, which our hash memo checks, so ours would hash every file once; snakemake's folder
is reused, not linked again, when a kept one is complete). It prints each round with the
1-minute load average before it, then each side's best and median and the ratios ours / theirs.

snakemake is not a dependency of the project: on first use this script installs it (pinned to
SNAKEMAKE below) into its own venv, `bench/.snakemake-venv` (git-ignored), with `python -m venv`
and pip, and prints how long that took. `--keep DIR` renders into DIR/N and keeps it; a later run
with the same DIR reuses a finished render (10,000 scenes take about 3 minutes of both CPUs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))  # render.py and scale.py, as modules

SNAKEMAKE = "9.27.1"
VENV = BENCH / ".snakemake-venv"
CONCURRENCY = 100


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f} (5 min {five:.2f})"


# -- snakemake, in a venv of its own -----------------------------------------------------------


def snakemake_bin() -> Path:
    """The snakemake executable of bench/.snakemake-venv, installed there on first use."""
    exe = VENV / "bin" / "snakemake"
    if exe.exists():
        return exe
    print(f"installing snakemake {SNAKEMAKE} into {VENV} (once; not a project dependency) ...")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    for args in (["--upgrade", "pip"], [f"snakemake=={SNAKEMAKE}"]):
        done = subprocess.run([*pip, *args], capture_output=True, text=True)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    print(f"  installed in {time.perf_counter() - start:.1f} s")
    return exe


# -- the two folders ---------------------------------------------------------------------------


def rendered(root: Path, n: int) -> Path:
    """A finished render of `independent(n)` in `root`: made here unless one is there."""
    from render import independent, process_env, write
    from scale import timed_render

    from hailuo_emulator import run_emulator

    spec = root / "bench.yaml"
    lock = spec.with_suffix(".lock")
    if spec.exists() and lock.exists() and spec.read_text() == independent(n):
        print(f"  reusing the render in {root}")
        return spec
    with run_emulator(job_seconds=1.0) as emu:
        emu.warm()
        spec = write(root, independent(n))
        print(f"  render {n:,} x 1 s, concurrency {CONCURRENCY}: {load()}")
        got = timed_render(spec, process_env(emu), CONCURRENCY)
        print(f"    wall {got['wall']:.1f} s")
    return spec


def outputs_of(spec: Path) -> dict[str, list[str]]:
    """Per scene, the files its lockfile entry records: the clip and its frames."""
    entries = json.loads(spec.with_suffix(".lock").read_text())["scenes"]
    out = {}
    for scene, entry in sorted(entries.items()):
        assert entry["state"] == "done", (scene, entry["state"])
        frames = [entry["frames"][k]["path"] for k in sorted(entry["frames"])]
        out[scene] = [entry["output"]["path"], *frames]
    return out


SNAKEFILE = """\
# An equal pipeline for `snakemake -n`, written by bench/snakemake.py: a job per scene, whose
# input is the storyboard and whose outputs are the scene's clip and first and last frames.
SCENES = {scenes!r}

wildcard_constraints:
    scene=r"s\\d+"

rule all:
    input:
        expand(
            "renders/bench/{{scene}}.{{ext}}", scene=SCENES, ext=["mp4", "first.png", "last.png"]
        )

rule scene:
    input:
        "bench.yaml"
    output:
        "renders/bench/{{scene}}.mp4",
        "renders/bench/{{scene}}.first.png",
        "renders/bench/{{scene}}.last.png"
    shell:
        "hailuo-pipe render --quiet --scene {{wildcards.scene}} {{input}}"
"""


def pipeline(spec: Path, folder: Path) -> Path:
    """Snakemake's folder: the Snakefile and hard links of the storyboard and every output."""
    outputs = outputs_of(spec)
    expected = {
        scene: [
            f"renders/bench/{scene}.mp4",
            *(f"renders/bench/{scene}.{k}.png" for k in ("first", "last")),
        ]
        for scene in outputs
    }
    assert outputs == expected, "the render's files are not named as the Snakefile says"
    snakefile = folder / "Snakefile"
    text = SNAKEFILE.format(scenes=list(outputs))
    names = [spec.name, *(f for fs in outputs.values() for f in fs)]
    if (
        snakefile.exists()
        and snakefile.read_text() == text
        and all(linked(spec, folder, f) for f in names)
    ):
        return snakefile  # linking again would change our files' ctime: see `warm_up`
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "renders" / "bench").mkdir(parents=True)
    os.link(spec, folder / spec.name)
    for files in outputs.values():
        for name in files:
            os.link(spec.parent / name, folder / name)
    snakefile.write_text(text)
    newest_input = (folder / spec.name).stat().st_mtime
    oldest_output = min((folder / f).stat().st_mtime for fs in outputs.values() for f in fs)
    assert oldest_output > newest_input, "an output is older than the storyboard"
    return snakefile


def linked(spec: Path, folder: Path, name: str) -> bool:
    try:
        return (folder / name).stat().st_ino == (spec.parent / name).stat().st_ino
    except FileNotFoundError:
        return False


# -- the two runs ------------------------------------------------------------------------------


def ours(spec: Path, env: dict[str, str]) -> float:
    from scale import rerun

    return rerun(spec, env)


def theirs(exe: Path, snakefile: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [str(exe), "-n", "--cores", "1", "-s", snakefile.name],
        cwd=snakefile.parent,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    said = done.stdout + done.stderr
    assert done.returncode == 0, said[-3000:]
    assert "Nothing to be done" in said, said[-3000:]
    return wall


def size(n: int, rounds: int, exe: Path, keep: Path | None) -> dict[str, Any]:
    from render import process_env

    from hailuo_emulator import run_emulator

    with tempfile.TemporaryDirectory() as tmp:
        base = keep if keep is not None else Path(tmp)
        spec = rendered(base / str(n), n)
        snakefile = pipeline(spec, base / f"{n}.snakemake")
        print(f"  snakemake's folder: {snakefile.parent} ({3 * n:,} hard-linked outputs)")
        # the emulator only so that a rerun that did send a request would be seen: it must not
        with run_emulator(job_seconds=1.0) as emu:
            env = process_env(emu)
            # A hard link changes the linked file's ctime, which our hash memo checks (as git's
            # index does): the first rerun after linking hashes every file again. One untimed
            # round of each side, as a render leaves its memos and a user's rerun finds them.
            print(f"  warm-up (not counted): {load()}", end="", flush=True)
            print(f" ours {ours(spec, env):.2f} s, snakemake -n {theirs(exe, snakefile):.2f} s")
            walls: dict[str, list[float]] = {"ours": [], "snakemake": []}
            for i in range(rounds):
                print(f"  round {i + 1}: ours, {load()}", end="", flush=True)
                walls["ours"].append(ours(spec, env))
                print(f" -> {walls['ours'][-1]:.2f} s; snakemake -n, {load()}", end="", flush=True)
                walls["snakemake"].append(theirs(exe, snakefile))
                print(f" -> {walls['snakemake'][-1]:.2f} s")
            requests = len(emu.requests())
        assert requests == 0, f"the no-op reruns sent {requests} requests"
        figures: dict[str, Any] = {"scenes": n}
        for side, w in walls.items():
            figures[side] = {"best": min(w), "median": statistics.median(w), "runs": w}
        o, t = figures["ours"], figures["snakemake"]
        figures["ratio_best"] = o["best"] / t["best"]
        figures["ratio_median"] = o["median"] / t["median"]
        print(
            f"  {n:,} scenes: ours best {o['best']:.2f} s, median {o['median']:.2f} s; "
            f"snakemake -n best {t['best']:.2f} s, median {t['median']:.2f} s; "
            f"ours / theirs {figures['ratio_best']:.3f} (best), "
            f"{figures['ratio_median']:.3f} (median); 0 requests"
        )
        return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000", help="scene counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each side, alternating")
    parser.add_argument("--json", metavar="FILE", help="also write the figures there")
    parser.add_argument(
        "--keep", metavar="DIR", type=Path, help="render in DIR/N, kept; reused when there"
    )
    args = parser.parse_args()
    exe = snakemake_bin()
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    print(f"snakemake {version.stdout.strip()}, {sys.executable}")
    out: dict[str, Any] = {"snakemake": version.stdout.strip(), "sizes": []}
    for n in (int(s) for s in args.sizes.split(",") if s):
        print(f"{n:,} scenes")
        out["sizes"].append(size(n, args.rounds, exe, args.keep))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
