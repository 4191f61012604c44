"""Fetch a finished clip: streamed to a temporary file, hashed as written, renamed into place.

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
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from hailuo_pipe.errors import DownloadError, MediaError, OutputExpired
from hailuo_pipe.storyboard.images import remember_written

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")

# bytes of a clip held before they are written: the file is written, synced, checked and
# renamed in threads, not on the event loop, where every file system call can wait behind the
# journal commit of another thread's fsync while many jobs end together
BUFFER = 256 * 1024
ATTEMPTS = 4
MAX_BYTES = 2 * 1024**3  # no Hailuo clip comes near this; a bound against a hostile server
# A clip is tens of MB: a download still going after DEADLINE seconds (all attempts together),
# or slower than MIN_RATE bytes/s on average once GRACE seconds have passed, is a server
# trickling bytes forever, not a slow link worth waiting on.
DEADLINE = 900.0
MIN_RATE = 16 * 1024
GRACE = 30.0


@dataclass(frozen=True)
class Downloaded:
    path: Path
    sha256: str
    size: int


@dataclass(frozen=True)
class _Pace:
    deadline: float  # time.monotonic() by which every attempt must be done
    min_rate: float
    grace: float


async def download(
    client: httpx.AsyncClient,
    url: str,
    dest: Path,
    *,
    job_id: str,
    attempts: int = ATTEMPTS,
    deadline: float = DEADLINE,
    min_rate: float = MIN_RATE,
    grace: float = GRACE,
    check: Callable[[Path], object] | None = None,
) -> Downloaded:
    """Download `url` to `dest` (atomically); DownloadError/OutputExpired name the job."""
    pace = _Pace(time.monotonic() + deadline, min_rate, grace)
    _remove_stale_parts(dest)
    last_error = "no attempt made"
    for attempt in range(attempts):
        if attempt:
            await asyncio.sleep(min(8.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.0))
        left = pace.deadline - time.monotonic()
        try:
            async with asyncio.timeout(max(left, 0.0)):
                return await _once(client, url, dest, job_id, pace, check)
        except TimeoutError:
            raise DownloadError(
                f"the clip of job {job_id} was still downloading after {deadline:.0f} s; "
                "rerun to fetch it again — nothing is generated again for it"
            ) from None
        except _Retry as err:
            last_error = str(err)
    raise DownloadError(
        f"could not download the clip of job {job_id} after {attempts} "
        f"attempts ({last_error}); rerun to try again — nothing is generated "
        "again for it"
    )


class _Retry(Exception):
    pass


# A few threads of its own for the file work: when jobs end together a pool of a hundred grows
# thread by thread, and starting each one holds the event loop until the thread runs.
_FILES = ThreadPoolExecutor(max_workers=4, thread_name_prefix="clip-files")


async def _in_thread(work: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_FILES, work, *args)


class _Part:
    """The partial file beside `dest` that a download writes, made by the first thread that
    writes to it rather than before the request: a clip smaller than BUFFER then costs one
    hop to a thread, not two (a thousand clips ending together, a thousand turns of the loop
    fewer). `write` and `settle` run in threads, `discard` on the loop at the end; a download
    cancelled while a thread was making the file leaves it, for the next render's
    `_remove_stale_parts`."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.path: Path | None = None
        self._out: BinaryIO | None = None

    def write(self, pieces: list[bytes], digest: hashlib._Hash) -> None:
        # hashed here, not as the bytes come: hashlib lets go of the GIL, the event loop cannot
        if self._out is None:
            self.dest.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(
                prefix=f".{self.dest.name}.", suffix=".part", dir=self.dest.parent
            )
            self.path, self._out = Path(name), os.fdopen(fd, "wb")
        for piece in pieces:
            digest.update(piece)
            self._out.write(piece)

    def settle(
        self, pieces: list[bytes], digest: hashlib._Hash, check: Callable[[Path], object] | None
    ) -> str:
        """The rest written and synced, the clip checked, then put in place and its hash
        remembered, so the next run need not read it again; returns the hash."""
        self.write(pieces, digest)
        assert self._out is not None and self.path is not None
        self._out.flush()
        os.fsync(self._out.fileno())
        self.close()
        if check is not None:
            check(self.path)
        os.replace(self.path, self.dest)
        self.path = None
        sha = digest.hexdigest()
        remember_written(self.dest, sha)
        return sha

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def discard(self) -> None:
        """Closed and removed, unless it was put in place."""
        self.close()
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


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


async def _once(
    client: httpx.AsyncClient,
    url: str,
    dest: Path,
    job_id: str,
    pace: _Pace,
    check: Callable[[Path], object] | None,
) -> Downloaded:
    import httpx  # here, not above: a rerun with nothing to fetch never loads it

    part = _Part(dest)
    try:
        digest, size = hashlib.sha256(), 0
        pieces: list[bytes] = []
        held = 0
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
                started = time.monotonic()
                # decoded: a clip sent with Content-Encoding: gzip is saved as the video,
                # not as its compressed bytes (the probe after this checks it is one);
                # as they come, not in CHUNK-sized pieces, so a trickle is seen as one
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_BYTES:
                        raise DownloadError(
                            f"the clip of job {job_id} is larger than "
                            f"{MAX_BYTES:,} bytes; refusing it"
                        )
                    took = time.monotonic() - started
                    if took > pace.grace and size < pace.min_rate * took:
                        raise DownloadError(
                            f"the clip of job {job_id} came too slowly ({size:,} bytes in "
                            f"{took:.0f} s); rerun to fetch it again — nothing is "
                            "generated again for it"
                        )
                    pieces.append(chunk)
                    held += len(chunk)
                    if held >= BUFFER:
                        await _in_thread(part.write, pieces, digest)
                        pieces, held = [], 0
        except httpx.HTTPError as err:
            raise _Retry(f"{type(err).__name__}: {err}") from None
        # Content-Length counts the bytes on the wire, compressed or not
        received = response.num_bytes_downloaded
        if expected is not None and expected.isdigit() and int(expected) != received:
            raise _Retry(f"truncated: got {received:,} of {int(expected):,} bytes")
        if size == 0:
            raise _Retry("empty response")
        try:
            sha = await _in_thread(part.settle, pieces, digest, check)
        except MediaError as err:
            # never recorded, never put in place: the job is kept, so the next run
            # fetches the clip again for free (a provider's glitch may have passed)
            raise DownloadError(
                f"the clip of job {job_id} was refused: {err}; rerun to fetch it again "
                "— nothing is generated again for it"
            ) from None
        return Downloaded(dest, sha, size)
    except OSError as err:
        why = "it is not a folder" if isinstance(err, FileExistsError) else err.strerror or err
        raise DownloadError(
            f"cannot write the clip of job {job_id} to {dest.parent}: {why}"
        ) from None
    finally:
        part.discard()
