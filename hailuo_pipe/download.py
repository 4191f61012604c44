"""Fetch a finished clip: streamed to a temporary file, hashed on the way, renamed into place.

A truncated or failed download is retried from the same URL (the job is paid for, so we never
generate again to get its bytes back); an expired URL is reported with the job id, since the
clip is still the provider's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .errors import DownloadError, OutputExpired

if TYPE_CHECKING:
    import httpx

CHUNK = 1 << 20
ATTEMPTS = 4
MAX_BYTES = 2 * 1024**3  # no Hailuo clip comes near this; a bound against a hostile server


@dataclass(frozen=True)
class Downloaded:
    path: Path
    sha256: str
    size: int


async def download(
    client: httpx.AsyncClient, url: str, dest: Path, *, job_id: str, attempts: int = ATTEMPTS
) -> Downloaded:
    """Download `url` to `dest` (atomically); DownloadError/OutputExpired name the job."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        why = "it is not a folder" if isinstance(err, FileExistsError) else err.strerror or err
        raise DownloadError(
            f"cannot write the clip of job {job_id} to {dest.parent}: {why}"
        ) from None
    _remove_stale_parts(dest)
    last_error = "no attempt made"
    for attempt in range(attempts):
        if attempt:
            await asyncio.sleep(min(8.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.0))
        try:
            return await _once(client, url, dest, job_id)
        except _Retry as err:
            last_error = str(err)
    raise DownloadError(
        f"could not download the clip of job {job_id} after {attempts} "
        f"attempts ({last_error}); rerun to try again — nothing is generated "
        "again for it"
    )


class _Retry(Exception):
    pass


def _make_durable(out: BinaryIO) -> None:
    out.flush()
    os.fsync(out.fileno())


# folder -> clip name -> partial files found there by this process's first download into it
_STALE: dict[Path, dict[str, list[Path]]] = {}


def _remove_stale_parts(dest: Path) -> None:
    """Partial files of `dest` left by a render that was killed mid-download.

    Only one render of a spec runs at a time (the lockfile's lock) and this scene's download
    is starting, so any found now are stale. The folder is read once per process, not once per
    download (a folder of a thousand clips is read a thousand times otherwise): a partial file
    made after that look is one of this process's own, which removes it itself.
    """
    found = _STALE.get(dest.parent)
    if found is None:
        found = {}
        for part in dest.parent.glob(".*.part"):  # .NAME.XXXXXXXX.part, as _once names them
            found.setdefault(part.name[1:].rsplit(".", 2)[0], []).append(part)
        _STALE[dest.parent] = found
    for part in found.pop(dest.name, ()):
        with contextlib.suppress(OSError):
            part.unlink()


async def _once(client: httpx.AsyncClient, url: str, dest: Path, job_id: str) -> Downloaded:
    import httpx  # here, not above: a rerun with nothing to fetch never loads it

    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest, size = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            try:
                async with client.stream("GET", url) as response:
                    if response.status_code in (401, 403, 404, 410):
                        raise OutputExpired(
                            f"the download URL of job {job_id} no longer works (HTTP "
                            f"{response.status_code}); the clip is still at the provider under "
                            "that job id",
                            job_id=job_id,
                        )
                    if response.status_code >= 400:
                        raise _Retry(f"HTTP {response.status_code}")
                    expected = response.headers.get("content-length")
                    async for chunk in response.aiter_raw(CHUNK):
                        size += len(chunk)
                        if size > MAX_BYTES:
                            raise DownloadError(
                                f"the clip of job {job_id} is larger than "
                                f"{MAX_BYTES:,} bytes; refusing it"
                            )
                        digest.update(chunk)
                        out.write(chunk)
            except httpx.HTTPError as err:
                raise _Retry(f"{type(err).__name__}: {err}") from None
            if expected is not None and int(expected) != size:
                raise _Retry(f"truncated: got {size:,} of {int(expected):,} bytes")
            if size == 0:
                raise _Retry("empty response")
            # in a thread: on the event loop, an fsync stalls every poll under way, by tens of
            # milliseconds when the disk is busy (as when many jobs end together)
            await asyncio.to_thread(_make_durable, out)
        os.replace(tmp, dest)
        return Downloaded(dest, digest.hexdigest(), size)
    except OSError as err:
        raise DownloadError(
            f"cannot write the clip of job {job_id} to {dest.parent}: {err.strerror or err}"
        ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
