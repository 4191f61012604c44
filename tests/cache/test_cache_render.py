"""Renders sharing one result cache, end to end: separate working copies of one storyboard,
`hailuo-pipe` run as subprocesses against the provider emulator, and a real S3-protocol server
on loopback (moto) or a folder. Each scene must be paid for once in total, whoever renders it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image
from support.emulator_fixture import provider_env
from support.s3_fixture import s3_environ, s3_server  # noqa: F401  (s3_server is a fixture)

from hailuo_emulator import Emulator
from hailuo_pipe.cache import open_cache
from hailuo_pipe.cli import main
from hailuo_pipe.plan import make_plan
from hailuo_pipe.render import RenderOptions, render
from hailuo_pipe.state.lockfile import Lockfile
from hailuo_pipe.validate import load_storyboard

GRAPH = """\
version: 1
name: shared
scenes:
  - id: root
    provider: wavespeed
    prompt: "[Aerial dive] the harbor"
    image: assets/a.png
  - id: left
    provider: runware
    prompt: "[Pan left] the docks"
    image: {from: root, frame: last}
  - id: right
    provider: minimax
    prompt: "[Pan right] the cranes"
    image: {from: root, frame: last}
    end_image: assets/a.png
  - id: alone
    provider: apiframe
    prompt: "[Static shot] a lighthouse"
    image: https://example.com/lighthouse.jpg
"""
SCENES = {"root", "left", "right", "alone"}

FLAT = """\
version: 1
name: flat
scenes:
  - id: one
    provider: wavespeed
    prompt: "[Push in] the harbor"
    image: assets/a.png
  - id: two
    provider: runware
    prompt: "[Truck left] the quay"
    image: assets/a.png
"""

Setup = tuple[str, dict[str, str]]  # (cache URL, environment for hailuo-pipe)


@pytest.fixture(params=["s3", "file"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    """A fresh, empty cache: a new bucket on the moto server, or a new folder."""
    if request.param == "s3":
        yield _s3(request.getfixturevalue("s3_server"))
    else:
        yield (tmp_path / "cache").as_uri(), {}


def _s3(endpoint: str) -> Setup:
    bucket = f"render-{uuid.uuid4().hex[:12]}"
    return f"s3://{bucket}/team/cache", s3_environ(endpoint, bucket)


@pytest.fixture
def s3(s3_server: str) -> Setup:  # noqa: F811
    return _s3(s3_server)


def env_for(emu: Emulator, url: str, cache_env: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        **provider_env(emu),
        **cache_env,
        "HAILUO_PIPE_CACHE": url,
        "HAILUO_PIPE_LEASE_TTL": "30",  # the shortest allowed
    }


def working_copy(root: Path, name: str, text: str = GRAPH) -> Path:
    """A separate checkout of the storyboard: same text, byte-identical assets."""
    folder = root / name
    (folder / "assets").mkdir(parents=True)
    image = root / "a.png"
    if not image.exists():
        Image.new("RGB", (640, 360), (90, 120, 160)).save(image)
    shutil.copyfile(image, folder / "assets" / "a.png")
    spec = folder / "story.yaml"
    spec.write_text(text, encoding="utf-8")
    return spec


def hailuo(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hailuo_pipe", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(*args: str, env: dict[str, str], code: int = 0) -> str:
    proc = hailuo(*args, env=env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, f"{args}: exit {proc.returncode}\n{out}\n{err}"
    assert "Traceback" not in err
    return out


def run_json(*args: str, env: dict[str, str], code: int = 0) -> dict:  # type: ignore[type-arg]
    return json.loads(run(*args, "--json", env=env, code=code))


def hashes(spec: Path) -> dict[str, dict[str, str]]:
    """scene -> {clip/first/last: sha256 of the file on disk}, checked against the lockfile."""
    lock = Lockfile.load(spec.with_suffix(".lock"), spec.stem)
    out = {}
    for scene_id, entry in lock.scenes.items():
        assert entry.state == "done" and entry.output is not None, scene_id
        records = {"clip": entry.output, **entry.frames}
        files = {}
        for name, record in records.items():
            digest = hashlib.sha256((spec.parent / record.path).read_bytes()).hexdigest()
            assert digest == record.sha256, (scene_id, name)
            files[name] = digest
        out[scene_id] = files
    return out


def submits(emu: Emulator) -> dict[str, int]:
    return {k: v for k, v in emu.jobs().items() if v and k != "total"}


# --------------------------------------------------------------------------------------------


def test_two_copies_at_once_pay_each_scene_once_and_a_third_pays_nothing(
    backend: Setup, emulator: Emulator, tmp_path: Path
) -> None:
    url, cache_env = backend
    env = env_for(emulator, url, cache_env)
    emulator.configure(job_seconds=1)
    a, b = working_copy(tmp_path, "a"), working_copy(tmp_path, "b")
    procs = [hailuo("render", "-j", "4", str(s), env=env) for s in (a, b)]
    logs = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, f"{out}\n{err}"
        logs.append(err)

    # one job per scene in total, wherever it ran; the other copy fetched it from the cache
    assert submits(emulator) == {"wavespeed": 1, "runware": 1, "minimax": 1, "apiframe": 1}
    fetched = [
        {
            sid
            for sid, e in Lockfile.load(s.with_suffix(".lock"), "shared").scenes.items()
            if e.key == "cache"
        }
        for s in (a, b)
    ]
    assert fetched[0] | fetched[1] == SCENES and not fetched[0] & fetched[1], fetched
    # they met at a lease: one waited while the other rendered, and was told by whom
    assert any("has been rendering it since" in log for log in logs), logs
    assert hashes(a) == hashes(b)
    assert set(hashes(a)) == SCENES

    c = working_copy(tmp_path, "c")
    plan = run_json("plan", str(c), env=env)
    assert {s["action"] for s in plan["steps"]} == {"pull"} and plan["cost"] == 0
    text = run("plan", str(c), env=env)
    assert "4 to pull" in text and "Cost of this run: $0.00" in text
    seen = len(emulator.requests())
    third = run_json("render", str(c), env=env)
    assert {r["outcome"] for r in third["scenes"]} == {"fetched"} and third["spent"] == 0
    assert len(emulator.requests()) == seen  # not even a poll or a download
    assert hashes(c) == hashes(a)


def _leases_with_jobs(url: str, cache_env: dict[str, str], n: int, timeout: float) -> dict:  # type: ignore[type-arg]
    cache = open_cache(url, cache_env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = {h.fingerprint: h for h in cache.leases() if h.job_id}
        if len(jobs) == n:
            return jobs
        time.sleep(0.1)
    raise AssertionError(f"{n} leases with job ids did not appear: {cache.leases()}")


def test_killed_lease_holder_is_taken_over_and_its_job_resumed(
    s3: Setup, emulator: Emulator, tmp_path: Path
) -> None:
    url, cache_env = s3
    env = env_for(emulator, url, cache_env)
    emulator.configure(job_seconds=4)
    a, b = working_copy(tmp_path, "a", FLAT), working_copy(tmp_path, "b", FLAT)
    # long enough that B, however slowly it starts on a busy machine, finds the lease unexpired
    holder = hailuo("render", "--quiet", str(a), env=env)
    try:
        held = _leases_with_jobs(url, cache_env, 2, timeout=20)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate()
    assert {h.holder for h in held.values()} == {f"{_user()}@{socket.gethostname()}:{holder.pid}"}
    assert submits(emulator) == {"wavespeed": 1, "runware": 1}

    # B has no lockfile entry: only the lease tells it that the scenes are being paid for
    started = time.monotonic()
    taker = hailuo("render", str(b), env=env)
    out, err = taker.communicate(timeout=60)
    assert taker.returncode == 0, f"{out}\n{err}"
    assert f":{holder.pid} has been rendering it since" in err  # who holds it, and since when
    assert "resumed" in out and "2 resumed" in out
    assert submits(emulator) == {"wavespeed": 1, "runware": 1}  # resumed, never resubmitted
    lock = Lockfile.load(b.with_suffix(".lock"), "flat")
    assert {e.job_id for e in lock.scenes.values()} == {h.job_id for h in held.values()}
    assert set(hashes(b)) == {"one", "two"}
    assert time.monotonic() - started < 60  # the 30 s lease lapses, then B polls within 5 s
    cache = open_cache(url, cache_env)
    assert {r.fingerprint for r in cache.ls()} == set(held)  # pushed by the taker
    assert cache.leases() == []  # and released


def _user() -> str:
    import getpass

    return getpass.getuser()


def cli(*args: str, env: dict[str, str], code: int = 0) -> dict:  # type: ignore[type-arg]
    """`hailuo-pipe ARGS --json` in this process (quicker than a subprocess per command)."""
    result = CliRunner().invoke(main, [*args, "--json"], env=env, catch_exceptions=False)
    assert result.exit_code == code, f"{args}: exit {result.exit_code}\n{result.output}"
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_cache_commands_push_ls_pull_gc(s3: Setup, emulator: Emulator, tmp_path: Path) -> None:
    url, cache_env = s3
    # rendered with the cache off: the lockfile and clips exist only in copy A
    env = {**provider_env(emulator), **cache_env, "HAILUO_PIPE_CACHE": "off"}
    a = working_copy(tmp_path, "a")
    render(load_storyboard(a), RenderOptions(environ=env, concurrency=4))
    assert sum(submits(emulator).values()) == 4

    assert cli("cache", "ls", "--cache", url, env=env)["entries"] == []
    pushed = cli("cache", "push", "--cache", url, str(a), env=env)
    assert {(s["scene"], s["status"]) for s in pushed["scenes"]} == {(s, "pushed") for s in SCENES}
    again = cli("cache", "push", "--cache", url, str(a), env=env)
    assert {s["status"] for s in again["scenes"]} == {"present"}  # idempotent

    listed = cli("cache", "ls", "--cache", url, str(a), env=env)
    lock = Lockfile.load(a.with_suffix(".lock"), "shared")
    by_fp = {e["fingerprint"]: e for e in listed["entries"]}
    assert set(by_fp) == {e.fingerprint for e in lock.scenes.values()}
    for scene_id, entry in lock.scenes.items():
        row = by_fp[entry.fingerprint]
        assert row["used_by"] == [f"story.yaml:{scene_id}"]
        assert (row["provider"], row["job_id"]) == (entry.provider, entry.job_id)
        assert row["size"] > entry.output.size > 0  # type: ignore[union-attr]  (clip + frames)
        assert row["pushed_by"] and row["pushed_at"]

    # a fresh copy pulls everything, records it, and asks no provider anything
    b = working_copy(tmp_path, "b")
    seen = len(emulator.requests())
    pulled = cli("cache", "pull", "--cache", url, str(b), env=env)
    assert {(s["scene"], s["status"]) for s in pulled["scenes"]} == {(s, "pulled") for s in SCENES}
    assert len(emulator.requests()) == seen
    assert hashes(b) == hashes(a)
    assert {s["action"] for s in cli("plan", str(b), env=env)["steps"]} == {"reuse"}
    assert cli("cache", "pull", "--cache", url, str(b), env=env)["scenes"] == []
    # a clip lost from a working copy comes back from the cache, verified, still for nothing
    left = Lockfile.load(b.with_suffix(".lock"), "shared").scenes["left"]
    assert left.output is not None
    (b.parent / left.output.path).unlink()
    again = cli("cache", "pull", "--cache", url, str(b), env=env)["scenes"]
    assert [(s["scene"], s["status"]) for s in again] == [("left", "pulled")]
    assert hashes(b) == hashes(a) and len(emulator.requests()) == seen

    # something no storyboard uses, and a lease whose holder is gone
    cache = open_cache(url, cache_env)
    stray = "sha256:" + hashlib.sha256(b"stray").hexdigest()
    cache.push(stray, {"clip": b.parent / "renders/shared/alone.mp4"}, {"provider": "wavespeed"})
    cache.acquire(stray, "gone@elsewhere:1", ttl=0.01)
    time.sleep(0.05)
    dry = cli("cache", "gc", "--cache", url, "--dry-run", str(a), str(b), env=env)
    assert dry["entries"] == [stray]
    assert [(h["holder"], h["expired"]) for h in dry["leases"]] == [("gone@elsewhere:1", True)]
    assert len(cache.ls()) == 5 and len(cache.leases()) == 1  # a dry run deletes nothing
    done = cli("cache", "gc", "--cache", url, str(a), env=env)
    assert done["entries"] == [stray] and len(done["leases"]) == 1
    assert {r.fingerprint for r in cache.ls()} == set(by_fp)
    assert cache.leases() == []
    text = CliRunner().invoke(main, ["cache", "ls", "--cache", url, str(a)], env=env)
    assert text.exit_code == 0 and "4 entries" in text.stdout and "4 used by" in text.stdout


def test_cache_commands_explain_what_is_wrong(s3: Setup, tmp_path: Path) -> None:
    url, cache_env = s3
    spec = working_copy(tmp_path, "a")
    bare = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "HAILUO_PIPE_"))}
    proc = hailuo("cache", "ls", str(spec), env=bare)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "Traceback" not in err
    assert err.startswith("error: no cache") and "--cache" in err

    missing = url.replace("s3://", "s3://no-such-")
    env = {**bare, **cache_env}
    proc = hailuo("cache", "gc", "--cache", missing, str(spec), env=env)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "Traceback" not in err
    assert "does not exist" in err and len(err.strip().splitlines()) == 1
    assert cache_env["AWS_SECRET_ACCESS_KEY"] not in err


def test_ctrl_c_stops_waiting_for_another_holder(emulator: Emulator, tmp_path: Path) -> None:
    url = (tmp_path / "cache").as_uri()
    env = {**env_for(emulator, url, {}), "HAILUO_PIPE_LEASE_TTL": "60"}
    spec = working_copy(tmp_path, "a", FLAT)
    board = load_storyboard(spec)
    plan = make_plan(board, Lockfile.load(board.lock_path, board.name))
    cache = open_cache(url, {})
    leases = [cache.acquire(s.fingerprint or "", "busy@elsewhere:7", ttl=60) for s in plan.steps]
    proc = hailuo("render", str(spec), env=env)
    assert proc.stderr is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or ()), daemon=True)
    reader.start()
    deadline = time.monotonic() + 20
    while not any("busy@elsewhere:7" in line for line in lines) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 130
    reader.join(5)
    assert any("busy@elsewhere:7 has been rendering it since" in line for line in lines), lines
    assert emulator.requests() == []
    assert all(lease.release() for lease in leases)  # still theirs: never taken over


def test_waiting_for_another_holder_keeps_no_slot(emulator: Emulator, tmp_path: Path) -> None:
    """With --concurrency 1, a scene leased elsewhere must not stop the other scene."""
    url = (tmp_path / "cache").as_uri()
    env = env_for(emulator, url, {})
    spec = working_copy(tmp_path, "a", FLAT)
    board = load_storyboard(spec)
    plan = make_plan(board, Lockfile.load(board.lock_path, board.name))
    lease = open_cache(url, {}).acquire(plan.step("one").fingerprint or "", "busy@elsewhere:7")
    done = threading.Event()

    def rendering() -> None:
        render(board, RenderOptions(environ=env, concurrency=1))
        done.set()

    worker = threading.Thread(target=rendering, daemon=True)
    worker.start()
    deadline = time.monotonic() + 20
    while "two" not in hashes_so_far(spec) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "two" in hashes_so_far(spec), "scene two waited for scene one's lease"
    assert not done.is_set()
    assert lease.release()  # the other machine gives up: this render takes the scene over
    worker.join(30)
    assert done.is_set()
    assert set(hashes(spec)) == {"one", "two"}
    assert sum(submits(emulator).values()) == 2


def hashes_so_far(spec: Path) -> set[str]:
    lock = Lockfile.load(spec.with_suffix(".lock"), spec.stem)
    return {scene_id for scene_id, entry in lock.scenes.items() if entry.state == "done"}


def test_plan_looks_the_cache_up_at_once_and_again_below_a_hit(write_spec) -> None:
    """Twelve scenes cost about one round trip's wait, not twelve; a scene chained to a hit gets
    its fingerprint from the cached frame, and that one is looked up too."""
    from hailuo_pipe.cache import CachedResult, ObjectRecord

    scenes = "".join(
        f'  - id: s{i:02d}\n    prompt: "[Static shot] {i}"\n'
        f"    image: https://example.com/{i}.jpg\n"
        for i in range(12)
    )
    spec = write_spec(
        "version: 1\nname: many\ndefaults:\n  provider: runware\nscenes:\n"
        + scenes
        + '  - id: next\n    prompt: "[Push in] after"\n    image: {from: s00, frame: last}\n'
    )
    board = load_storyboard(spec)
    lock = Lockfile.load(board.lock_path, board.name)
    first = make_plan(board, lock).step("s00").fingerprint
    hit = CachedResult(
        first or "",
        "runware",
        "job-0",
        0.28,
        1,
        {"last": ObjectRecord("last.png", "ab" * 32, 9, "pixels:" + "cd" * 32)},
    )

    class Slow:
        """A cache whose every look-up takes a round trip."""

        def __init__(self) -> None:
            self.asked: list[str] = []
            self.at_once = self.max_at_once = 0
            self.mutex = threading.Lock()

        def lookup(self, fingerprint: str) -> CachedResult | None:
            with self.mutex:
                self.asked.append(fingerprint)
                self.at_once += 1
                self.max_at_once = max(self.max_at_once, self.at_once)
            time.sleep(0.05)
            with self.mutex:
                self.at_once -= 1
            return hit if fingerprint == first else None

    cache = Slow()
    plan = make_plan(board, lock, cache=cache)  # type: ignore[arg-type]
    assert plan.step("s00").action == "pull" and plan.step("s00").cached == hit
    assert cache.max_at_once > 1  # the first look-ups ran together
    below = plan.step("next").fingerprint
    # 12 at once, each also by its scheme-1 fingerprint (entries pushed by older versions);
    # then the one below the hit, by both
    assert below is not None and below not in cache.asked[:24] and cache.asked[-2] == below
    assert len(cache.asked) == 26
