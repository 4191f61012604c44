"""Leases on both backends: exactly one of racing claimers wins, a job recorded in a lease
survives its holder, and a lost lease is noticed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from support.caches import META, Opener, fp, race

from hailuo_pipe.cache import CachedResult, Lease, LeaseHeld, LeaseLost, open_cache


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
    lease.renew()
    with pytest.raises(LeaseHeld) as info:
        opener().acquire(fp(20), "you@h:2", ttl=30)
    assert (info.value.holder, info.value.job_id, info.value.key) == ("me@h:1", "job-9", "key-9")
    assert info.value.provider == "runware"
    assert "me@h:1" in str(info.value)
    assert lease.release()
    again = opener().acquire(fp(20), "you@h:2", ttl=30)
    assert again.job_id is None and not again.resumed
    assert again.release()
    assert cache.lease_of(fp(20)) is None


def test_a_renewed_lease_is_not_taken_over(opener: Opener):
    # outlives its TTL by renewals; margins wide enough for a loaded machine's S3 round trips
    lease = opener().acquire(fp(22), "slow@h:1", ttl=2.0)
    for _ in range(3):
        time.sleep(0.8)
        lease.renew()
    with pytest.raises(LeaseHeld):
        opener().acquire(fp(22), "eager@h:2", ttl=30)
    assert lease.release()


def test_lost_lease_is_noticed(opener: Opener):
    mine = opener().acquire(fp(21), "slow@h:1", ttl=0.2)
    time.sleep(0.3)
    theirs = opener().acquire(fp(21), "fast@h:2", ttl=30)
    assert theirs.previous_holder == "slow@h:1"
    with pytest.raises(LeaseLost, match="fast@h:2"):
        mine.record_job("job-late", "key-late")
    with pytest.raises(LeaseLost):
        mine.renew()
    assert not mine.release()  # not ours any more: left alone
    assert opener().lease_of(fp(21)).holder == "fast@h:2"  # type: ignore[union-attr]


def test_a_claim_finds_the_result_and_takes_no_lease(opener: Opener, scene: dict[str, Path]):
    cache = opener()
    cache.push(fp(23), scene, META)
    got = opener().claim(fp(23), "late@h:2", ttl=30)
    assert isinstance(got, CachedResult) and got.job_id == "job-1"
    assert cache.leases() == []


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
