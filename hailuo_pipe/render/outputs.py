"""A finished clip's record: its file, its first and last frames, what it cost."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import BrokenExecutor
from pathlib import Path

from hailuo_pipe.errors import MediaError
from hailuo_pipe.providers.base import JobStatus
from hailuo_pipe.render import extract
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
    """The clip's first and last frames, written beside it and recorded, decoded off the event
    loop (in worker processes when a render has many clips: `extract.pool`)."""
    loop = asyncio.get_running_loop()
    pngs = {which: ctx.board.frame_path(scene.id, which) for which in ("first", "last")}
    work = functools.partial(extract.frames, scene.id, clip, pngs, ctx.base)
    used = ctx.decoders
    try:
        records = await loop.run_in_executor(used, work)
    except BrokenExecutor:
        # a worker died (a decoder crash on an odd clip, the OOM killer): every extraction
        # under way heard of it; the first to hear makes a fresh pool, each tries once more
        if ctx.decoders is used:
            used.shutdown(wait=False)
            ctx.decoders = extract.pool(extract.PROCESSES_FROM)
        try:
            records = await loop.run_in_executor(ctx.decoders, work)
        except BrokenExecutor:
            raise MediaError(
                f"{scene.id}: decoding the downloaded clip crashed its worker process"
            ) from None
    extract.remember(records, ctx.base)
    return records


def clip_check(scene: Scene) -> Callable[[Path], object]:
    """What a download must be to be recorded: the clip this scene's request could give."""

    def check(path: Path) -> object:
        from hailuo_pipe.media import check_clip  # PyAV loads only when a clip is fetched

        return check_clip(path, scene.resolution, scene.duration)

    return check


def _first(*values: float | None) -> float | None:
    return next((v for v in values if v is not None), None)
