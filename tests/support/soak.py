"""Kill `hailuo-pipe render` at random moments and prove nothing is lost or paid twice.

    python tests/soak.py --kills 50 --scenes 20 --seed 1          # what `make soak` runs
    python tests/soak.py --kills 20 --signals KILL,INT,TERM --json

The harness starts the provider emulator, writes a chained storyboard over all seven hosted
providers (a chain through the whole storyboard, fan-out from each segment's root, independent
URL-image leaves), then runs `render` as a subprocess and signals it after a seeded random
delay, again and again, resuming each time. Then it lets one render finish and checks:
every scene done, every clip and frame on disk with the sha256 the lockfile records, the
lockfile valid, and exactly one paid job per scene at the emulator.

A kill inside a submit's round trip to an API that cannot deduplicate (WaveSpeed, MiniMax,
Apiframe, fal.ai; GMI and Replicate when their job lists cannot tell) parks the scene as
`unknown`: by design it is never resent blindly. The harness then does what the README asks of
a user: it looks at the provider's dashboard (the emulator's job list) and either adopts the
job it finds there (`--adopt SCENE=JOB`) or, when there is none, reruns with `--resubmit
SCENE`. Both are counted in the figures; neither pays twice.

Importable by tests (`run_soak`) and runnable as a script; figures are printed as a table or
JSON for docs/reliability.md.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Collection, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1]))  # run as a script: tests/ holds support/

from hailuo_emulator import Emulator, run_emulator
from hailuo_pipe.state.lockfile import PARKED, Lockfile
from support.emulator_fixture import provider_env

NAME = "soak"
SIGNALS = {"KILL": signal.SIGKILL, "INT": signal.SIGINT, "TERM": signal.SIGTERM}
# providers that can take a local file or a chained frame; apiframe takes URLs only
CHAINABLE = ("runware", "wavespeed", "minimax", "gmicloud", "fal", "replicate")
RUN_TIMEOUT = 120.0
TRACEBACK = "Traceback (most recent call last)"


def scene_id(i: int) -> str:
    return f"s{i:02d}"


def tag(sid: str) -> str:
    """Text only this scene's prompt contains: finds its jobs in the emulator's job list."""
    return f"<{sid}>"


def storyboard(scenes: int) -> str:
    """A storyboard of `scenes` scenes in segments of five: root, chain, fan-out, URL leaf.

    Each segment's root takes the last frame of the previous segment's chain, so the chain runs
    through the whole storyboard; the rest renders concurrently as soon as its frame exists.
    """
    lines = [f"version: 1\nname: {NAME}\nscenes:\n"]
    for i in range(scenes):
        sid, pos = scene_id(i), i % 5
        if pos == 4:
            provider, image = "apiframe", f"https://example.com/frames/{sid}.jpg"
        else:
            # by the count of chainable scenes so far, so ten scenes use all of them
            provider = CHAINABLE[(i - i // 5) % len(CHAINABLE)]
            if pos == 0:
                image = f"{{from: {scene_id(i - 2)}}}" if i else "assets/a.png"
            elif pos == 3:  # fan-out: the segment root's first frame
                image = f"{{from: {scene_id(i - 3)}, frame: first}}"
            else:
                image = f"{{from: {scene_id(i - 1)}}}"
        lines.append(
            f"  - id: {sid}\n    provider: {provider}\n"
            f'    prompt: "[Tracking shot] harbor shot {tag(sid)}"\n    image: {image}\n'
        )
    return "".join(lines)


def write_workdir(root: Path, scenes: int) -> Path:
    """The spec and its sample image in `root`; returns the spec's path."""
    from PIL import Image

    (root / "assets").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (640, 360), (90, 120, 160)).save(root / "assets" / "a.png")
    spec = root / f"{NAME}.yaml"
    spec.write_text(storyboard(scenes), encoding="utf-8")
    return spec


@dataclass
class Run:
    """One `render` process: how it was stopped and how it ended."""

    delay: float | None  # seconds before the signal; None for a run left to finish
    signal: str | None
    returncode: int
    seconds: float
    stdout: str
    stderr: str
    states: dict[str, int]  # lockfile states right after it ended


@dataclass
class Figures:
    """What a soak did and found; `problems` is empty when every check passed."""

    scenes: int
    seed: int
    signals: dict[str, int] = field(default_factory=dict)
    kills_with_work_left: int = 0
    kills_mid_submit: int = 0  # a scene was left `submitting`: killed inside a submit
    graceful_exits: int = 0  # SIGINT/SIGTERM runs that ended with code 130
    runs: int = 0
    wall_seconds: float = 0.0
    paid_jobs: int = 0
    submit_requests: int = 0
    parked_unknown: int = 0
    adopted_from_dashboard: int = 0
    resubmitted_without_job: int = 0
    leftover_temp_files: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def table(self) -> str:
        rows = [
            ("scenes", self.scenes),
            ("seed", self.seed),
            ("signals sent", ", ".join(f"{n} SIG{s}" for s, n in self.signals.items())),
            ("  of which while work remained", self.kills_with_work_left),
            ("  of which inside a submit (left 'submitting')", self.kills_mid_submit),
            ("  SIGINT/SIGTERM runs that exited 130", self.graceful_exits),
            ("render processes", self.runs),
            ("wall time", f"{self.wall_seconds:.1f} s"),
            ("paid jobs at the emulator", self.paid_jobs),
            ("submit requests (incl. idempotent resends)", self.submit_requests),
            ("scenes parked as unknown by a kill", self.parked_unknown),
            ("  adopted from the dashboard", self.adopted_from_dashboard),
            ("  resubmitted (no job existed)", self.resubmitted_without_job),
            ("temp files left behind", self.leftover_temp_files),
            ("result", "ok" if self.ok else "FAILED: " + "; ".join(self.problems)),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def render_command(spec: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "hailuo_pipe", "render", "--quiet", "-j", "4", *extra, str(spec)]


def run_render(
    spec: Path,
    env: Mapping[str, str],
    *,
    delay: float | None = None,
    sig: str | None = None,
    extra: tuple[str, ...] = (),
) -> Run:
    """Run one render; with `delay`, send `sig` that many seconds after it starts."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen(render_command(spec, *extra), env=dict(env), stdout=out, stderr=err)
        if delay is not None and sig is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(delay)
            if proc.poll() is None:
                proc.send_signal(SIGNALS[sig])
        try:
            code = proc.wait(RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = -999
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        return Run(
            delay,
            sig,
            code,
            seconds,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            lock_states(spec),
        )


def lock_states(spec: Path) -> dict[str, int]:
    try:
        lock = Lockfile.load(spec.with_suffix(".lock"), NAME)
    except Exception as err:  # a broken lockfile is a finding, reported by the caller
        return {f"unreadable: {err}": 1}
    return dict(Counter(e.state for e in lock.scenes.values()))


def scene_ids(scenes: int) -> list[str]:
    return [scene_id(i) for i in range(scenes)]


def jobs_by_scene(emu: Emulator, scenes: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The emulator's paid jobs, attributed to scenes by the tag in their prompts."""
    found: dict[str, list[dict[str, Any]]] = {sid: [] for sid in scenes}
    for job in emu.job_list():
        text = json.dumps(job["body"])
        owners = [sid for sid in found if tag(sid) in text]
        for sid in owners:
            found[sid].append(job)
    return found


def parked(lock_path: Path) -> list[str]:
    """Scenes whose submission's fate is unknown: never resent without --resubmit."""
    lock = Lockfile.load(lock_path, NAME)
    return sorted(sid for sid, e in lock.scenes.items() if e.state in PARKED)


def recorded_jobs(lock: Lockfile) -> set[str]:
    """The job ids a lockfile knows of: a scene's lost job is never among them."""
    return {e.job_id for e in lock.scenes.values() if e.job_id}


def dashboard(
    lock_path: Path, emu: Emulator, scenes: list[str], accounted: Collection[str] = ()
) -> tuple[dict[str, str], list[str], list[str]]:
    """Do for each parked scene what the README asks of a user: look for its job at the
    provider (the emulator's job list, less the `accounted` jobs some lockfile recorded, such
    as earlier attempts that failed) and adopt it with `--adopt`; when there is none, it is
    safe to `--resubmit`.

    Returns (to adopt: scene -> job id, to resubmit, problems).
    """
    jobs = jobs_by_scene(emu, scenes)
    adopt, resubmit, problems = {}, [], []
    for sid in parked(lock_path):
        found = [j for j in jobs[sid] if j["id"] not in accounted]
        if len(found) == 1:
            adopt[sid] = found[0]["id"]
        elif not found:
            resubmit.append(sid)
        else:
            problems.append(f"{sid}: {len(found)} paid jobs before any --resubmit")
    return adopt, resubmit, problems


def resolve_unknowns(spec: Path, emu: Emulator, env: Mapping[str, str], figures: Figures) -> None:
    """Adopt or resubmit every parked scene, then render once more."""
    lock_path = spec.with_suffix(".lock")
    figures.parked_unknown += len(parked(lock_path))
    adopt, resubmit, problems = dashboard(lock_path, emu, scene_ids(figures.scenes))
    figures.adopted_from_dashboard += len(adopt)
    figures.resubmitted_without_job += len(resubmit)
    figures.problems += problems
    if not adopt and not resubmit:
        return
    extra = [arg for sid in resubmit for arg in ("--resubmit", sid)]
    extra += [arg for sid, job in adopt.items() for arg in ("--adopt", f"{sid}={job}")]
    run = run_render(spec, env, extra=tuple(extra))
    figures.runs += 1
    if run.returncode != 0:
        figures.problems.append(f"the run after resolving unknowns failed: {run.stderr[-500:]}")


def verify_outputs(spec: Path, scenes: int) -> list[str]:
    """Every scene done, its clip and frames on disk with the sha256 the lockfile records."""
    base = spec.parent
    try:
        lock = Lockfile.load(spec.with_suffix(".lock"), NAME)
    except Exception as err:
        return [f"the lockfile does not load: {err}"]
    problems = []
    for sid in scene_ids(scenes):
        entry = lock.scenes.get(sid)
        if entry is None or entry.state != "done" or entry.output is None:
            problems.append(f"{sid} is not done ({entry.state if entry else 'absent'})")
            continue
        for record in (entry.output, *entry.frames.values()):
            path = base / record.path
            if not path.is_file():
                problems.append(f"{sid}: {record.path} is missing")
            elif hashlib.sha256(path.read_bytes()).hexdigest() != record.sha256:
                problems.append(f"{sid}: {record.path} does not match its sha256")
    return problems


def verify_jobs(emu: Emulator, scenes: int) -> tuple[list[str], int, int]:
    """Exactly one successful paid job per scene; any other job is one that failed.

    Returns (problems, paid jobs, failed jobs).
    """
    problems = []
    failed = 0
    for sid, found in jobs_by_scene(emu, scene_ids(scenes)).items():
        ok = sum(1 for job in found if job["outcome"] == "ok")
        failed += len(found) - ok
        if ok != 1:
            problems.append(f"{sid}: {ok} successful paid jobs, not 1")
    paid = emu.jobs()["total"]
    if paid != scenes + failed:
        problems.append(f"{paid} paid jobs for {scenes} scenes and {failed} failed jobs")
    return problems, paid, failed


def temp_files(base: Path) -> int:
    """Temporary files (downloads, lockfile writes) a crash left behind, and lockfile journals
    (a render that ends folds its journal into the lockfile)."""
    return sum(
        1
        for p in base.rglob("*")
        if ((p.name.startswith(".") and p.suffix in (".part", ".tmp")) or p.suffix == ".journal")
        and p.is_file()
    )


def verify(spec: Path, emu: Emulator, scenes: int, figures: Figures) -> None:
    figures.problems += verify_outputs(spec, scenes)
    problems, figures.paid_jobs, failed = verify_jobs(emu, scenes)
    figures.problems += problems
    if failed:
        figures.problems.append(f"{failed} jobs failed in a run without failing jobs")
    figures.submit_requests = len(emu.requests("submit"))
    figures.leftover_temp_files = temp_files(spec.parent)


def check_run(run: Run, figures: Figures) -> None:
    """What every stopped or finished run must show: no traceback, a readable lockfile."""
    if TRACEBACK in run.stderr:
        figures.problems.append(f"a traceback after SIG{run.signal}: {run.stderr[-800:]}")
    if any(k.startswith("unreadable") for k in run.states):
        figures.problems.append(f"the lockfile is unreadable after SIG{run.signal}: {run.states}")
    if run.signal in ("INT", "TERM") and run.returncode == 130:
        figures.graceful_exits += 1
    elif run.signal in ("INT", "TERM") and run.returncode not in (0, -2, -15):
        figures.problems.append(
            f"SIG{run.signal} after {run.delay:.2f} s ended with code {run.returncode}: "
            f"{run.stderr[-500:]}"
        )


def run_soak(
    emu: Emulator,
    workdir: Path,
    *,
    kills: int,
    scenes: int = 20,
    seed: int = 1,
    signals: tuple[str, ...] = ("KILL",),
    job_seconds: float = 1.0,
    max_delay: float = 1.5,
    rehearsals: bool = False,
    saved_plans: bool = False,
) -> Figures:
    """Signal `kills` renders at seeded random moments, finish, resolve, verify. With
    `rehearsals`, a `--provider preview` render, signalled too, follows each one (it must pay
    nothing and touch no paid result); with `saved_plans`, each render applies a plan saved
    just before it (`plan --out`, then `render --plan`)."""
    started = time.monotonic()
    emu.reset(job_seconds=job_seconds, seed=seed)
    spec = write_workdir(workdir, scenes)
    env = {**os.environ, **provider_env(emu), "PYTHONUNBUFFERED": "1"}
    rng = random.Random(seed)
    figures = Figures(scenes=scenes, seed=seed)
    sent: Counter[str] = Counter()
    planfile = spec.with_name("soak.plan.json")
    for _ in range(kills):
        sig = rng.choice(signals)
        extra: tuple[str, ...] = ()
        if saved_plans:
            subprocess.run(
                [sys.executable, "-m", "hailuo_pipe", "plan", "--out", str(planfile), str(spec)],
                env=dict(env),
                capture_output=True,
                timeout=RUN_TIMEOUT,
            )
            extra = ("--plan", str(planfile))
        run = run_render(spec, env, delay=rng.uniform(0.05, max_delay), sig=sig, extra=extra)
        if saved_plans and "stale" in run.stderr:  # made just before: it must be applied
            figures.problems.append(f"a fresh saved plan was refused: {run.stderr[-300:]}")
        figures.runs += 1
        sent[sig] += 1
        if run.states.get("done", 0) < scenes:
            figures.kills_with_work_left += 1
        if run.states.get("submitting"):
            figures.kills_mid_submit += 1
        check_run(run, figures)
        if rehearsals:
            rehearsal = ("--provider", "preview")
            check_run(
                run_render(spec, env, delay=rng.uniform(0.05, 1.0), sig=sig, extra=rehearsal),
                figures,
            )
    if rehearsals:  # finished, so it sweeps what its killed predecessors left
        check_run(run_render(spec, env, extra=("--provider", "preview")), figures)
    figures.signals = dict(sent)
    final = run_render(spec, env)
    figures.runs += 1
    check_run(final, figures)
    if final.returncode not in (0, 1):
        figures.problems.append(f"the final render ended {final.returncode}: {final.stderr}")
    resolve_unknowns(spec, emu, env, figures)
    verify(spec, emu, scenes, figures)
    figures.wall_seconds = time.monotonic() - started
    return figures


# -- provider faults --------------------------------------------------------------------------

RATE = 0.2
FAULTS: dict[str, Any] = {
    "rate_limit": {"p": RATE, "retry_after": 0.05},  # 429 with Retry-After
    "server_error": {"p": RATE, "on": ["submit", "poll", "download"]},
    "timeout": {"p": RATE, "seconds": 0.8},  # answers after the client's timeout
    "drop": {"p": RATE},  # the connection closes after the API acted
    "malformed_json": {"p": RATE},
    "truncate_downloads": {"p": RATE},
    "fail_jobs": RATE,  # the job runs and fails
}


@dataclass
class FaultFigures:
    """One storyboard rendered under one fault kind (or all of them) until it was done."""

    fault: str
    scenes: int
    seed: int
    injected: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    rounds_under_faults: int = 0
    done_under_faults: bool = False
    rounds_after: int = 0  # renders once the provider was healthy again
    scene_failures: int = 0
    adopted: int = 0
    resubmitted: int = 0
    paid_jobs: int = 0
    failed_jobs: int = 0
    wall_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass
class Converged:
    rounds: int = 0
    done: bool = False
    failures: int = 0
    adopted: int = 0
    resubmitted: int = 0
    problems: list[str] = field(default_factory=list)


def unclear(result: Any, entry: Any) -> str | None:
    """Why a failed scene's report would leave its user guessing, or None when it is clear:
    a job that exists is named by its id, a parked scene says how to resubmit it."""
    if result.outcome == "skipped":
        return None
    if entry is not None and entry.state == "unknown":
        wanted = f"--resubmit {result.scene}"
        return None if wanted in (result.error or "") else f"{result.scene}: no {wanted}"
    if entry is not None and entry.job_id and result.job_id != entry.job_id:
        return f"{result.scene}: job {entry.job_id} not named in {result.error!r}"
    return None if result.error else f"{result.scene}: failed without a message"


HTTP_TIMEOUT = 0.5  # seconds; the emulator answers in milliseconds, a "timeout" in 0.8 s


@contextlib.contextmanager
def retry_waits(scale: float) -> Iterator[None]:
    """Scale the providers' retry waits (CI runs them 5x faster; the policy is the same)."""
    from hailuo_pipe.providers.http import HostedProvider

    policy = HostedProvider.retry_policy
    HostedProvider.retry_policy = replace(
        policy, base_delay=policy.base_delay * scale, max_delay=policy.max_delay * scale
    )
    try:
        yield
    finally:
        HostedProvider.retry_policy = policy


def converge(
    spec: Path, emu: Emulator, scenes: int, *, rounds: int, http_timeout: float = HTTP_TIMEOUT
) -> Converged:
    """Render in-process again and again, as a user would, until every scene is done.

    Between rounds, parked scenes are settled the README's way (`dashboard`, with the jobs
    some lockfile recorded ignored); nothing else is ever resent.
    """
    from hailuo_pipe.render import RenderOptions, render
    from hailuo_pipe.validate import load_storyboard

    out = Converged()
    lock_path = spec.with_suffix(".lock")
    resubmit: list[str] = []
    adopt: dict[str, str] = {}
    accounted = recorded_jobs(Lockfile.load(lock_path, NAME))
    for _ in range(rounds):
        out.rounds += 1
        opts = RenderOptions(
            environ=provider_env(emu),
            concurrency=8,
            http_timeout=http_timeout,
            resubmit=set(resubmit),
            adopt=adopt,
        )
        result = render(load_storyboard(spec), opts)
        lock = Lockfile.load(lock_path, NAME)
        accounted |= recorded_jobs(lock)
        for r in result.failed:
            out.failures += 1
            if why := unclear(r, lock.scenes.get(r.scene)):
                out.problems.append(why)
        if len(lock.scenes) == scenes and all(e.state == "done" for e in lock.scenes.values()):
            out.done = True
            return out
        adopt, resubmit, problems = dashboard(lock_path, emu, scene_ids(scenes), accounted)
        out.adopted += len(adopt)
        out.resubmitted += len(resubmit)
        out.problems += problems
    return out


def run_faults(
    emu: Emulator,
    workdir: Path,
    fault: str,
    *,
    scenes: int = 10,
    seed: int = 1,
    rounds: int = 4,
    retry_scale: float = 1.0,
) -> FaultFigures:
    """Render under `fault` (a FAULTS key, or "all") for up to `rounds` renders; if it is not
    done by then, heal the provider and finish. Then verify clips and paid jobs."""
    started = time.monotonic()
    switches = FAULTS if fault == "all" else {fault: FAULTS[fault]}
    emu.reset(job_seconds=0.2, seed=seed, **switches)
    spec = write_workdir(workdir, scenes)
    figures = FaultFigures(fault=fault, scenes=scenes, seed=seed)
    with retry_waits(retry_scale):
        faulty = converge(spec, emu, scenes, rounds=rounds)
        figures.injected = {k: v for k, v in emu.faults().items() if v}
        figures.rounds_under_faults, figures.done_under_faults = faulty.rounds, faulty.done
        healthy = Converged(done=True)
        if not faulty.done:
            emu.configure(**dict.fromkeys(switches))
            healthy = converge(spec, emu, scenes, rounds=3)
            figures.rounds_after = healthy.rounds
    for part in (faulty, healthy):
        figures.scene_failures += part.failures
        figures.adopted += part.adopted
        figures.resubmitted += part.resubmitted
        figures.problems += part.problems
    if not healthy.done:
        figures.problems.append("not done, even once the provider was healthy")
    figures.problems += verify_outputs(spec, scenes)
    problems, figures.paid_jobs, figures.failed_jobs = verify_jobs(emu, scenes)
    figures.problems += problems
    if figures.failed_jobs:
        figures.injected["fail_jobs"] = figures.failed_jobs
    figures.requests = len(emu.requests())
    figures.wall_seconds = time.monotonic() - started
    return figures


def fault_table(rows: list[FaultFigures]) -> str:
    head = "fault | injected | requests | renders | scene failures | adopted | resubmitted | paid"
    lines = [head]
    for f in rows:
        injected = ", ".join(f"{k} {v}" for k, v in sorted(f.injected.items()))
        renders = f"{f.rounds_under_faults}" + (f" + {f.rounds_after}" if f.rounds_after else "")
        lines.append(
            f"{f.fault} | {injected} | {f.requests} | {renders} | {f.scene_failures} | "
            f"{f.adopted} | {f.resubmitted} | {f.paid_jobs} ({f.failed_jobs} failed) | "
            + ("ok" if f.ok else "FAILED: " + "; ".join(f.problems))
        )
    return "\n".join(lines)


@contextlib.contextmanager
def _workdir(keep: str | None) -> Iterator[Path]:
    if keep:
        path = Path(keep)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="hailuo-soak-") as tmp:
        yield Path(tmp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--scenes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--signals", default="KILL", help="comma-separated: KILL,INT,TERM")
    # jobs long enough that the 50 kills land while the storyboard is still rendering
    parser.add_argument("--job-seconds", type=float, default=3.0)
    parser.add_argument("--max-delay", type=float, default=1.5)
    parser.add_argument("--workdir", help="keep the files here instead of a temporary folder")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--faults", action="store_true", help="render under each provider fault instead"
    )
    parser.add_argument(
        "--rehearsals", action="store_true", help="a killed preview rehearsal after each render"
    )
    parser.add_argument(
        "--saved-plans", action="store_true", help="each render applies a plan saved before it"
    )
    args = parser.parse_args(argv)
    if args.faults:
        return _main_faults(args)
    signals = tuple(s.strip().upper().removeprefix("SIG") for s in args.signals.split(","))
    with run_emulator() as emu, _workdir(args.workdir) as workdir:
        figures = run_soak(
            emu,
            workdir,
            kills=args.kills,
            scenes=args.scenes,
            seed=args.seed,
            signals=signals,
            job_seconds=args.job_seconds,
            max_delay=args.max_delay,
            rehearsals=args.rehearsals,
            saved_plans=args.saved_plans,
        )
    print(json.dumps(figures.to_json(), indent=2) if args.json else figures.table())
    return 0 if figures.ok else 1


def _main_faults(args: argparse.Namespace) -> int:
    rows = []
    with run_emulator() as emu:
        for fault in [*FAULTS, "all"]:
            with _workdir(None) as workdir:
                rows.append(run_faults(emu, workdir, fault, scenes=args.scenes, seed=args.seed))
    if args.json:
        print(json.dumps([r.to_json() for r in rows], indent=2))
    else:
        print(fault_table(rows))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
