"""A job is never asked for before the lockfile on disk says it is being asked for: the
"submitting" record is durable before its submit leaves, whatever merges the writes."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from support.emulator_fixture import provider_env

from hailuo_emulator import Emulator
from hailuo_pipe.providers.wavespeed import WaveSpeedProvider
from hailuo_pipe.render import RenderOptions, render
from hailuo_pipe.state.journal import journal_path
from hailuo_pipe.state.lockfile import Lockfile
from hailuo_pipe.validate import load_storyboard


def test_every_submit_leaves_after_its_record_is_on_disk(
    write_spec: Any, emulator: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    scenes = "".join(
        f'  - id: s{i:02d}\n    prompt: "[Static shot] scene {i}"\n'
        f"    image: https://example.com/frames/{i}.jpg\n"
        for i in range(12)
    )
    head = "version: 1\nname: many\ndefaults:\n  provider: wavespeed\nscenes:\n"
    spec = write_spec(head + scenes)
    board = load_storyboard(spec)
    real = WaveSpeedProvider.submit
    seen: list[int] = []

    async def submit(self: WaveSpeedProvider, client: Any, request: Any, key: str) -> str:
        # what a kill -9 at this instant would leave: the lockfile and its journal as on disk,
        # copied (loaded in place by the render's own process, which holds the spec's lock,
        # the journal would be folded in under the render)
        copy = tmp_path / "at-submit" / board.lock_path.name
        copy.parent.mkdir(exist_ok=True)
        for source in (board.lock_path, journal_path(board.lock_path)):
            target = copy.parent / source.name
            target.unlink(missing_ok=True)
            if source.exists():
                shutil.copyfile(source, target)
        on_disk = Lockfile.load(copy, board.name)
        seen.append(sum(1 for e in on_disk.scenes.values() if e.state == "submitting"))
        return await real(self, client, request, key)

    monkeypatch.setattr(WaveSpeedProvider, "submit", submit)
    result = render(board, RenderOptions(environ=provider_env(emulator), concurrency=12))
    assert {r.outcome for r in result.results} == {"rendered"}
    assert len(seen) == 12
    # the k-th submit to leave finds at least k scenes recorded as being submitted (none has
    # an answer yet: all twelve are sent before the first one's job could end)
    assert all(count >= k for k, count in enumerate(seen, 1)), seen
