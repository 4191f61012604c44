"""A cache's entries on both backends: push, look up, pull (verified), list, collect."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from support.caches import META, Opener, fp

from hailuo_pipe.cache import CachedResult, CacheError, open_cache


def test_push_lookup_pull_round_trip(opener: Opener, scene: dict[str, Path], tmp_path: Path):
    cache = opener()
    assert cache.lookup(fp(1)) is None
    pushed = cache.push(fp(1), scene, META)
    assert pushed.uploaded
    entry = pushed.entry
    assert (entry.provider, entry.job_id, entry.cost, entry.seed) == ("wavespeed", "job-1", 0.23, 7)
    assert entry.files["clip"].size == scene["clip"].stat().st_size

    other = opener()
    assert other.lookup(fp(1)) == entry
    dest = {name: tmp_path / "out" / f"{name}.bin" for name in scene}
    assert other.pull(fp(1), dest) == entry
    for name in scene:
        assert dest[name].read_bytes() == scene[name].read_bytes()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"{n}.bin" for n in scene)
    assert [r.fingerprint for r in other.ls()] == [fp(1)]


def test_a_second_push_uploads_nothing_and_keeps_the_first_generation(
    opener: Opener, scene: dict[str, Path]
):
    opener().push(fp(1), scene, META)
    again = opener().push(fp(1), scene, {**META, "job_id": "job-2"})
    assert not again.uploaded and again.entry.job_id == "job-1"


def test_meta_json_keeps_what_the_pusher_gives_but_not_the_reserved_keys(
    opener: Opener, scene: dict[str, Path]
):
    cache = opener()
    meta = {**META, "request": [{"prompt": "a"}], "pushed_by": "forged", "version": 99}
    cache.push(fp(5), {"clip": scene["clip"]}, meta)
    got = cache.store.get(f"clips/{fp(5).split(':')[1]}/meta.json")
    assert got is not None
    data = json.loads(got[0])
    assert data["request"] == [{"prompt": "a"}]
    assert data["version"] == 1 and data["pushed_by"] != "forged"


def test_a_push_whose_meta_names_another_fingerprint_is_refused(
    opener: Opener, scene: dict[str, Path]
):
    with pytest.raises(CacheError, match="with meta of"):
        opener().push(fp(6), scene, {**META, "fingerprint": fp(7)})


def test_corrupted_object_detected_on_pull(opener: Opener, scene: dict[str, Path], tmp_path: Path):
    cache = opener()
    cache.push(fp(2), scene, META)
    evil = tmp_path / "evil.mp4"
    good = scene["clip"].read_bytes()
    # the last byte flipped: same size, other content (a fixed byte would be the clip's own
    # last byte one time in 256)
    evil.write_bytes(good[:-1] + bytes([good[-1] ^ 0xFF]))
    hexd = fp(2).split(":")[1]
    cache.store.upload(f"clips/{hexd}/clip.mp4", evil, "0" * 64)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(CacheError, match="corrupt"):
        cache.pull(fp(2), {"first": out / "first.png", "clip": out / "clip.mp4"})
    assert list(out.iterdir()) == []  # nothing half-written, not even the verified frame
    # push repairs a damaged entry
    assert cache.push(fp(2), scene, META).uploaded
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
    assert cache.push(fp(3), scene, META).entry.fingerprint == fp(3)


def test_gc_keeps_what_is_asked_and_drops_expired_leases(opener: Opener, scene: dict[str, Path]):
    cache = opener()
    for n in range(3):
        cache.push(fp(n), {"clip": scene["clip"]}, META)
    live = cache.acquire(fp(10), "alive@host:1", ttl=60)
    cache.acquire(fp(11), "dead@host:2", ttl=0.01)
    time.sleep(0.05)
    assert cache.gc([fp(0)], dry_run=True) == [fp(1), fp(2)]
    assert len(cache.ls()) == 3 and cache.lease_of(fp(11)) is not None  # a dry run deletes nothing
    assert cache.gc([fp(0)]) == [fp(1), fp(2)]
    assert [r.fingerprint for r in cache.ls()] == [fp(0)]
    assert cache.lease_of(fp(11)) is None
    held = cache.lease_of(fp(10))
    assert held is not None and held.holder == "alive@host:1"
    assert live.release()


def test_gc_leaves_a_half_pushed_entry_alone_while_its_scene_is_leased(
    opener: Opener, scene: dict[str, Path]
):
    cache = opener()
    cache.store.upload(f"clips/{fp(12).split(':')[1]}/clip.mp4", scene["clip"], "x")
    lease = cache.acquire(fp(12), "pusher@h:1", ttl=60)
    assert cache.gc([], grace=0) == []
    lease.release()
    assert cache.gc([], grace=0) == [fp(12)]


def test_pull_many_pulls_each_entry_and_reports_each_miss(
    opener: Opener, scene: dict[str, Path], tmp_path: Path
):
    cache = opener()
    for n in range(5):
        cache.push(fp(n), {"clip": scene["clip"]}, META)
    wanted = {fp(n): {"clip": tmp_path / "many" / f"{n}.mp4"} for n in range(6)}
    got = cache.pull_many(wanted, workers=4)
    assert all(isinstance(got[fp(n)], CachedResult) for n in range(5))
    assert isinstance(got[fp(5)], CacheError)
    assert len(list((tmp_path / "many").iterdir())) == 5


def test_a_fingerprint_that_is_not_one_never_becomes_a_key(tmp_path: Path):
    cache = open_cache(str(tmp_path / "c"))
    with pytest.raises(CacheError, match="not a scene fingerprint"):
        cache.lookup("sha256:../../etc/passwd")
