"""Helpers for the cache's tests: fingerprints, both backends, a scene's files, thread races.

The fixtures are registered in tests/cache/conftest.py (`backend`, `opener`, `scene`).
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hailuo_pipe.cache import Cache, open_cache
from support.s3_fixture import s3_environ

Opener = Callable[[], Cache]
META = {"provider": "wavespeed", "job_id": "job-1", "cost": 0.23, "seed": 7}


def fp(n: int | str) -> str:
    """A scene fingerprint made from `n`."""
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
    """A scene's clip and frames (random bytes: the cache never looks inside)."""
    src = tmp_path / "src"
    src.mkdir()
    files = {"clip": src / "clip.mp4", "first": src / "first.png", "last": src / "last.png"}
    for i, path in enumerate(files.values()):
        path.write_bytes(os.urandom(40_000 + i))
    return files


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
