"""Frame extraction of a large render runs in worker processes, records the same frames, and
tells the render's hash memo what it hashed; a small render keeps threads."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from support.emulator_fixture import provider_env

from hailuo_emulator import Emulator
from hailuo_pipe.render import extract
from hailuo_pipe.render.run import RenderOptions, render
from hailuo_pipe.state.lockfile import Lockfile
from hailuo_pipe.storyboard import images
from hailuo_pipe.validate import load_storyboard


def test_a_small_render_extracts_in_threads_a_large_one_in_processes() -> None:
    small, large = extract.pool(extract.PROCESSES_FROM - 1), extract.pool(extract.PROCESSES_FROM)
    try:
        assert isinstance(small, ThreadPoolExecutor)
        assert isinstance(large, ProcessPoolExecutor)
    finally:
        small.shutdown()
        large.shutdown()


def test_frames_extracted_by_workers_are_recorded_and_remembered(
    write_spec, emulator: Emulator  # type: ignore[no-untyped-def]
) -> None:
    n = extract.PROCESSES_FROM
    scenes = "".join(
        f'  - id: s{i:03d}\n    prompt: "[Static shot] scene {i}"\n'
        f"    image: https://example.com/frames/{i}.jpg\n"
        for i in range(n)
    )
    spec = write_spec(f"version: 1\nname: many\ndefaults:\n  provider: runware\nscenes:\n{scenes}")
    board = load_storyboard(spec)
    result = render(board, RenderOptions(environ=provider_env(emulator), concurrency=32))
    assert {r.outcome for r in result.results} == {"rendered"}
    lock = Lockfile.load(board.lock_path, board.name)
    for entry in lock.scenes.values():
        assert set(entry.frames) == {"first", "last"}
        for record in entry.frames.values():
            data = (spec.parent / record.path).read_bytes()
            assert hashlib.sha256(data).hexdigest() == record.sha256
            assert record.pixels and record.size == len(data)
    images._save_hashes()  # what the render's process does as it exits
    memo = json.loads((board.render_dir / ".hashes.json").read_text())
    assert {Path(r.path).name for e in lock.scenes.values() for r in e.frames.values()} <= set(memo)
