"""Push 200 small real clips into the result cache, then time pulling all of them back.

    .venv/bin/python bench/cache.py [--clips 200] [--workers 16] [--url s3://bucket/prefix]

Without --url it runs against both a moto S3 server on loopback (tests/support/s3_fixture.py,
started as a subprocess) and a file:// folder. Each entry is a real H.264 MP4 (~300 KB, made
once with hailuo_pipe.media.synthetic_clip) plus first/last PNGs, under 200 different
fingerprints. The pull goes into a fresh folder through a thread pool, verifying every file's
sha256 and size.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from PIL import Image

from hailuo_pipe.cache import Cache, CachedResult, open_cache, pull_many

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def make_scene(folder: Path) -> dict[str, Path]:
    clip = folder / "clip.mp4"
    try:
        from hailuo_pipe.media import synthetic_clip

        synthetic_clip(clip, width=640, height=360, seconds=1.0, seed=1, min_bytes=300_000)
    except ImportError:  # media.py not there: a stand-in of the same size
        clip.write_bytes(os.urandom(300_000))
    files = {"clip": clip}
    for which, colour in (("first", (40, 80, 120)), ("last", (200, 120, 60))):
        png = folder / f"{which}.png"
        Image.new("RGB", (640, 360), colour).save(png)
        files[which] = png
    return files


def fingerprint(i: int) -> str:
    return "sha256:" + hashlib.sha256(f"bench-{i}".encode()).hexdigest()


def run(label: str, cache: Cache, scene: dict[str, Path], clips: int, workers: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    meta = {"provider": "wavespeed", "job_id": "bench", "cost": 0.23}
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda i: cache.push(fingerprint(i), scene, meta), range(clips)))
    push_s = time.perf_counter() - t0

    dest_root = Path(tempfile.mkdtemp(prefix="hailuo-bench-pull-"))
    try:
        wanted = {
            fingerprint(i): {name: dest_root / f"{i:04d}.{name}" for name in scene}
            for i in range(clips)
        }
        t0 = time.perf_counter()
        got = pull_many(cache, wanted, workers=workers)
        pull_s = time.perf_counter() - t0
        failed = [fp for fp, r in got.items() if not isinstance(r, CachedResult)]
        if failed:
            raise SystemExit(f"{label}: {len(failed)} pulls failed: {got[failed[0]]}")
        total = sum(p.stat().st_size for p in dest_root.iterdir())
    finally:
        shutil.rmtree(dest_root, ignore_errors=True)
    mb = total / 1e6
    print(
        f"{label:>8}: push {clips} entries {push_s:6.2f} s | pull {clips} entries "
        f"({mb:.1f} MB, {3 * clips} files) {pull_s:6.2f} s = {mb / pull_s:6.1f} MB/s, "
        f"{clips / pull_s:6.1f} entries/s  [{workers} threads]"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--url", help="an existing cache (AWS_* from the environment)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hailuo-bench-") as tmp:
        scene = make_scene(Path(tmp))
        size = sum(p.stat().st_size for p in scene.values())
        clip_kb = scene["clip"].stat().st_size / 1e3
        print(f"one entry: clip {clip_kb:.0f} KB, total {size / 1e3:.0f} KB")
        if args.url:
            run("url", open_cache(args.url), scene, args.clips, args.workers)
            return
        from support.s3_fixture import moto_s3, s3_environ

        with moto_s3() as endpoint:
            bucket = f"bench-{uuid.uuid4().hex[:8]}"
            cache = open_cache(f"s3://{bucket}/cache", s3_environ(endpoint, bucket))
            run("moto s3", cache, scene, args.clips, args.workers)
        run("file", open_cache((Path(tmp) / "cache").as_uri()), scene, args.clips, args.workers)


if __name__ == "__main__":
    main()
