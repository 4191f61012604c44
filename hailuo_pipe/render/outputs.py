"""A finished clip's record: its file, its first and last frames, what it cost."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from hailuo_pipe.errors import MediaError
from hailuo_pipe.providers.base import JobStatus
from hailuo_pipe.render import shared as sharing
from hailuo_pipe.render.context import Context
from hailuo_pipe.state.lockfile import Entry, FileRecord, now
from hailuo_pipe.storyboard.model import Scene


async def done_entry(
    ctx: Context, scene: Scene, entry: Entry, clip: Path, sha: str, size: int, status: JobStatus
) -> Entry:
    """The entry of a finished clip: its file, its frames, what it cost."""
    frames = await frames_of(ctx, scene, clip)
    price = float(ctx.providers[scene.provider].price(scene))
    return Entry(
        fingerprint=entry.fingerprint,
        provider=entry.provider,
        state="done",
        key=entry.key,
        request=entry.request,
        job_id=entry.job_id,
        submitted_at=entry.submitted_at,
        finished_at=now(),
        output=FileRecord(ctx.rel(clip), sha, size),
        frames=frames,
        # what the provider reported; else our price table (the API reports no cost)
        cost=_first(status.cost, entry.cost, price),
        cost_source=(
            "provider"
            if status.cost is not None
            else (entry.cost_source if entry.cost is not None else None) or "price-list"
        ),
        seed=status.seed if status.seed is not None else entry.seed,
        scheme=entry.scheme,
    )


async def frames_of(ctx: Context, scene: Scene, clip: Path) -> dict[str, FileRecord]:
    """The clip's first and last frames, written beside it and recorded, decoded in a thread."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(ctx.decoders, _extract_frames, ctx, scene, clip)


def _extract_frames(ctx: Context, scene: Scene, clip: Path) -> dict[str, FileRecord]:
    board, sid = ctx.board, scene.id
    pngs = {which: board.frame_path(sid, which) for which in ("first", "last")}
    try:
        return sharing.frame_records(clip, pngs, ctx.base)
    except MediaError as err:
        raise MediaError(f"{sid}: the downloaded clip is not a readable video ({err})") from None


def clip_check(scene: Scene) -> Callable[[Path], object]:
    """What a download must be to be recorded: the clip this scene's request could give."""

    def check(path: Path) -> object:
        from hailuo_pipe.media import check_clip  # PyAV loads only when a clip is fetched

        return check_clip(path, scene.resolution, scene.duration)

    return check


def _first(*values: float | None) -> float | None:
    return next((v for v in values if v is not None), None)
