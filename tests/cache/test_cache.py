"""The shared result cache: both backends (a real moto S3 server on loopback, and a folder)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.s3_fixture import s3_environ, s3_server  # noqa: F401  (s3_server is a fixture)

from hailuo_pipe.cache import (
    Cache,
    CachedResult,
    CacheError,
    Lease,
    LeaseHeld,
    LeaseLost,
    open_cache,
    pull_many,
    pull_missing,
    push_lockfile,
)
from hailuo_pipe.errors import ConfigError
from hailuo_pipe.state.lockfile import Entry, FileRecord, Lockfile

Opener = Callable[[], Cache]


def fp(n: int | str) -> str:
    return "sha256:" + hashlib.sha256(str(n).encode()).hexdigest()


@pytest.fixture(params=["s3", "file"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """(url, environ) of a fresh, empty cache: a new bucket on moto, or a new folder."""
    if request.param == "s3":
        endpoint = request.getfixturevalue("s3_server")
        bucket = f"cache-{uuid.uuid4().hex[:12]}"
        yield f"s3://{bucket}/team/cache", s3_environ(endpoint, bucket)
    else:
        yield (tmp_path / "cache").as_uri(), {}


@pytest.fixture
def opener(backend: tuple[str, dict[str, str]]) -> Opener:
    """Opens a new Cache (its own boto3 client) each call, as another process would."""
    url, env = backend
    return lambda: open_cache(url, env)


@pytest.fixture
def scene(tmp_path: Path) -> dict[str, Path]:
    src = tmp_path / "src"
    src.mkdir()
    files = {"clip": src / "clip.mp4", "first": src / "first.png", "last": src / "last.png"}
    for i, path in enumerate(files.values()):
        path.write_bytes(os.urandom(40_000 + i))
    return files


META = {"provider": "wavespeed", "job_id": "job-1", "cost": 0.23, "seed": 7}


def test_push_lookup_pull_round_trip(opener: Opener, scene: dict[str, Path], tmp_path: Path):
    cache = opener()
    assert cache.lookup(fp(1)) is None
    pushed = cache.push(fp(1), scene, META)
    assert (pushed.provider, pushed.job_id, pushed.cost, pushed.seed) == (
        "wavespeed",
        "job-1",
        0.23,
        7,
    )
    assert pushed.files["clip"].size == scene["clip"].stat().st_size

    other = opener()
    found = other.lookup(fp(1))
    assert found == pushed
    dest = {name: tmp_path / "out" / f"{name}.bin" for name in scene}
    got = other.pull(fp(1), dest)
    assert got == pushed
    for name in scene:
        assert dest[name].read_bytes() == scene[name].read_bytes()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"{n}.bin" for n in scene)
    # idempotent: a second push uploads nothing and returns the entry already there
    result, uploaded = other._push(fp(1), scene, {**META, "job_id": "job-2"})
    assert not uploaded and result.job_id == "job-1"
    assert [r.fingerprint for r in other.ls()] == [fp(1)]


def test_corrupted_object_detected_on_pull(opener: Opener, scene: dict[str, Path], tmp_path: Path):
    cache = opener()
    cache.push(fp(2), scene, META)
    evil = tmp_path / "evil.mp4"
    evil.write_bytes(scene["clip"].read_bytes()[:-1] + b"X")  # same size, other content
    hexd = fp(2).split(":")[1]
    cache.store.upload(f"clips/{hexd}/clip.mp4", evil, "0" * 64)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(CacheError, match="corrupt"):
        cache.pull(fp(2), {"first": out / "first.png", "clip": out / "clip.mp4"})
    assert list(out.iterdir()) == []  # nothing half-written, not even the verified frame
    # push repairs a damaged entry
    cache.push(fp(2), scene, META)
    cache.pull(fp(2), {"clip": out / "clip.mp4"})
    assert (out / "clip.mp4").read_bytes() == scene["clip"].read_bytes()


def test_half_pushed_entry_is_a_miss(opener: Opener, scene: dict[str, Path], tmp_path: Path):
    cache = opener()
    hexd = fp(3).split(":")[1]
    cache.store.upload(f"clips/{hexd}/clip.mp4", scene["clip"], "x")
    assert cache.lookup(fp(3)) is None
    assert cache.ls() == []
    with pytest.raises(CacheError, match="not in the cache"):
        cache.pull(fp(3), {"clip": tmp_path / "c.mp4"})
    assert not (tmp_path / "c.mp4").exists()
    assert cache.gc([]) == []  # young: its push may be under way
    assert cache.gc([], grace=0) == [fp(3)]
    assert cache.push(fp(3), scene, META).fingerprint == fp(3)


def test_gc_keeps_what_is_asked_and_drops_expired_leases(opener: Opener, scene: dict[str, Path]):
    cache = opener()
    for n in range(3):
        cache.push(fp(n), {"clip": scene["clip"]}, META)
    live = cache.acquire(fp(10), "alive@host:1", ttl=60)
    cache.acquire(fp(11), "dead@host:2", ttl=0.01)
    time.sleep(0.05)
    assert cache.gc([fp(0)], dry_run=True) == [fp(1), fp(2)]
    assert len(cache.ls()) == 3
    assert cache.gc([fp(0)]) == [fp(1), fp(2)]
    assert [r.fingerprint for r in cache.ls()] == [fp(0)]
    assert cache.lease_of(fp(11)) is None
    held = cache.lease_of(fp(10))
    assert held is not None and held.holder == "alive@host:1"
    assert live.release()


def race(n: int, target: Callable[[int], object]) -> list[object]:
    """Run target(0..n-1) in threads released together; their results or exceptions."""
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target(i)
        except Exception as err:
            results[i] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_racing_acquirers_exactly_one_wins(opener: Opener):
    caches = [opener() for _ in range(6)]
    for round_ in range(4):
        key = fp(f"r{round_}")
        results = race(6, lambda i, key=key: caches[i].acquire(key, f"w{i}@h:{i}", ttl=30))
        winners = [r for r in results if isinstance(r, Lease)]
        assert len(winners) == 1, results
        held = [r for r in results if isinstance(r, LeaseHeld)]
        assert len(held) == 5
        assert all(h.holder == winners[0].holder for h in held)


def test_lease_record_renew_release(opener: Opener):
    cache = opener()
    lease = cache.acquire(fp(20), "me@h:1", ttl=30, provider="runware")
    lease.record_job("job-9", "key-9")
    lease.renew(60)
    with pytest.raises(LeaseHeld) as info:
        opener().acquire(fp(20), "you@h:2", ttl=30)
    assert (info.value.holder, info.value.job_id, info.value.key) == ("me@h:1", "job-9", "key-9")
    assert info.value.provider == "runware"
    assert "me@h:1" in str(info.value)
    assert lease.release()
    with opener().acquire(fp(20), "you@h:2", ttl=30) as again:
        assert again.job_id is None and not again.resumed
    assert cache.lease_of(fp(20)) is None


def test_lost_lease_is_noticed(opener: Opener):
    mine = opener().acquire(fp(21), "slow@h:1", ttl=0.2)
    time.sleep(0.3)
    theirs = opener().acquire(fp(21), "fast@h:2", ttl=30)
    assert theirs.previous_holder == "slow@h:1"
    with pytest.raises(LeaseLost, match="fast@h:2"):
        mine.record_job("job-late")
    with pytest.raises(LeaseLost):
        mine.renew()
    assert not mine.release()  # not ours any more: left alone
    assert opener().lease_of(fp(21)).holder == "fast@h:2"  # type: ignore[union-attr]


HOLDER = textwrap.dedent(
    """
    import sys, time
    from hailuo_pipe.cache import open_cache
    url, fingerprint = sys.argv[1], sys.argv[2]
    env = dict(a.split("=", 1) for a in sys.argv[3:])
    lease = open_cache(url, env).acquire(fingerprint, None, ttl=1.0, provider="minimax")
    lease.record_job("job-of-the-dead", "key-of-the-dead")
    print(lease.holder, flush=True)
    time.sleep(600)
    """
)


def test_expired_lease_of_a_killed_holder_is_taken_over_by_one(
    backend: tuple[str, dict[str, str]],
):
    url, env = backend
    caches = [open_cache(url, env) for _ in range(4)]
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, fp(30), *(f"{k}={v}" for k, v in env.items())],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        dead_holder = proc.stdout.readline().strip()  # type: ignore[union-attr]
        assert dead_holder.endswith(f":{proc.pid}")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    held = caches[0].lease_of(fp(30))
    assert held is not None and (held.holder, held.job_id) == (dead_holder, "job-of-the-dead")
    time.sleep(max(0.0, held.expires - time.time()) + 0.05)
    results = race(4, lambda i: caches[i].acquire(fp(30), f"taker{i}@h:{i}", ttl=30))
    winners = [r for r in results if isinstance(r, Lease)]
    assert len(winners) == 1, results
    lease = winners[0]
    assert lease.resumed
    assert (lease.job_id, lease.key, lease.provider) == (
        "job-of-the-dead",
        "key-of-the-dead",
        "minimax",
    )
    assert lease.previous_holder == dead_holder
    assert all(
        isinstance(r, LeaseHeld) and r.holder == lease.holder for r in results if r is not lease
    )


def test_wait_for_returns_the_result_when_it_appears(opener: Opener, scene: dict[str, Path]):
    worker, waiter = opener(), opener()
    lease = worker.acquire(fp(40), "worker@h:1", ttl=30)
    seen: list[LeaseHeld] = []
    waiting = threading.Event()

    def finish() -> None:
        waiting.wait(10)  # the waiter has reported the holder at least once
        worker.push(fp(40), scene, META)
        lease.release()

    def on_wait(held: LeaseHeld) -> None:
        seen.append(held)
        waiting.set()

    threading.Thread(target=finish).start()
    got = waiter.wait_for(fp(40), poll=0.05, timeout=10, on_wait=on_wait, holder="w@h:2")
    assert isinstance(got, CachedResult) and got.job_id == "job-1"
    assert seen and seen[0].holder == "worker@h:1"


def test_wait_for_takes_over_an_expired_lease(opener: Opener):
    waiter = opener()  # opened first: making a client must not eat into the lease's ttl
    old = opener().acquire(fp(41), "gone@h:1", ttl=1.0)
    old.record_job("job-41", "key-41")
    seen: list[LeaseHeld] = []
    got = waiter.wait_for(fp(41), poll=0.05, timeout=10, on_wait=seen.append, holder="me@h:2")
    assert isinstance(got, Lease) and got.resumed and got.job_id == "job-41"
    assert seen and seen[-1].job_id == "job-41"
    with pytest.raises(CacheError, match="gave up waiting"):
        opener().wait_for(fp(41), poll=0.05, timeout=0.2, holder="third@h:3")
    # nobody holds it and nothing is cached: we get a fresh lease
    fresh = opener().wait_for(fp(42), poll=0.05, timeout=1)
    assert isinstance(fresh, Lease) and not fresh.resumed


def test_lockfile_push_and_pull_missing(opener: Opener, tmp_path: Path):
    board = tmp_path / "board"
    renders = board / "renders"
    renders.mkdir(parents=True)
    lock = Lockfile(board / "story.lock", "story")
    for sid in ("a", "b"):
        clip, png = renders / f"{sid}.mp4", renders / f"{sid}.last.png"
        clip.write_bytes(os.urandom(5000))
        png.write_bytes(os.urandom(700))
        lock.scenes[sid] = Entry(
            fingerprint=fp(f"scene-{sid}"),
            provider="wavespeed",
            state="done",
            key="k",
            request={"prompt": sid},
            job_id=f"job-{sid}",
            output=FileRecord(f"renders/{sid}.mp4", _sha(clip), clip.stat().st_size),
            frames={"last": FileRecord(f"renders/{sid}.last.png", _sha(png), png.stat().st_size)},
            cost=0.23,
        )
    cache = opener()
    assert {o.status for o in push_lockfile(board, lock, cache)} == {"pushed"}
    assert {o.status for o in push_lockfile(board, lock, cache)} == {"present"}
    assert cache.lookup(fp("scene-a")).meta["request"] == {"prompt": "a"}  # type: ignore[union-attr]
    original = (renders / "a.mp4").read_bytes()
    (renders / "a.mp4").unlink()
    (renders / "b.last.png").write_bytes(b"damaged")
    outcomes = {o.scene_id: o for o in pull_missing(board, lock, opener())}
    assert outcomes["a"].status == "pulled" and outcomes["a"].detail == "clip"
    assert outcomes["b"].status == "pulled" and outcomes["b"].detail == "last"
    assert (renders / "a.mp4").read_bytes() == original
    assert {o.status for o in pull_missing(board, lock, cache)} == {"local"}


def test_pull_many(opener: Opener, scene: dict[str, Path], tmp_path: Path):
    cache = opener()
    for n in range(5):
        cache.push(fp(n), {"clip": scene["clip"]}, META)
    wanted = {fp(n): {"clip": tmp_path / "many" / f"{n}.mp4"} for n in range(6)}
    got = pull_many(cache, wanted, workers=4)
    assert all(isinstance(got[fp(n)], CachedResult) for n in range(5))
    assert isinstance(got[fp(5)], CacheError)
    assert len(list((tmp_path / "many").iterdir())) == 5


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# configuration and errors ----------------------------------------------------------------


def test_config_errors_never_show_secrets():
    pytest.importorskip("boto3")
    with pytest.raises(ConfigError, match="no bucket"):
        open_cache("s3:///prefix", {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"})
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID") as info:
        open_cache("s3://bucket/p", {"AWS_SECRET_ACCESS_KEY": "TOPSECRET"})
    assert "TOPSECRET" not in str(info.value)
    assert "AWS_SECRET_ACCESS_KEY" not in str(info.value).split("set ")[1].split(" (")[0]
    with pytest.raises(ConfigError, match="expected s3://"):
        open_cache("gs://bucket/p", {})
    with pytest.raises(ConfigError, match="three slashes"):
        open_cache("file://relative/path", {})


def test_not_a_fingerprint(tmp_path: Path):
    cache = open_cache(str(tmp_path / "c"))
    with pytest.raises(CacheError, match="not a scene fingerprint"):
        cache.lookup("sha256:../../etc/passwd")


def test_s3_missing_bucket_and_unreachable_endpoint(s3_server: str):  # noqa: F811
    env = s3_environ(s3_server)
    cache = open_cache("s3://no-such-bucket-here/x", env)
    with pytest.raises(CacheError, match="does not exist"):
        cache.lookup(fp(1))
    with pytest.raises(CacheError, match="does not exist"):
        cache.check()
    secret = "S3CR3T-never-printed"
    closed = {
        **env,
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_MAX_ATTEMPTS": "1",
    }
    with pytest.raises(CacheError, match="unreachable") as info:
        open_cache("s3://bucket-x/p", closed).lookup(fp(1))
    assert secret not in str(info.value)
