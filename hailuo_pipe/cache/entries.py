"""A cache's entries: one finished scene each, named by its fingerprint, and meta.json, the
record that makes an entry exist.

An entry's files are uploaded first and its meta.json last, so an entry without meta.json is a
miss (a push under way, or one that was killed). meta.json holds every file's sha256 and size,
and they are verified on pull: a pull downloads into temporary files and renames them into
place only when all of them are verified.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from collections.abc import Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hailuo_pipe.cache.records import ObjectRecord, file_digest
from hailuo_pipe.cache.store import (
    FORMAT_VERSION,
    PreconditionFailed,
    Store,
    default_holder,
    hex_of,
    short,
)
from hailuo_pipe.errors import CacheError
from hailuo_pipe.state.lockfile import now

# the files an entry may hold: name (as in dest/files mappings) -> object name in the entry
OBJECTS: Mapping[str, str] = {"clip": "clip.mp4", "first": "first.png", "last": "last.png"}
META = "meta.json"
# meta.json keys the cache computes itself; a caller's values for them are ignored
_RESERVED = ("version", "fingerprint", "files", "pushed_at", "pushed_by")


@dataclass(frozen=True)
class CachedResult:
    """One finished scene in the cache. `files` maps clip/first/last to its object's record."""

    fingerprint: str
    provider: str | None
    job_id: str | None
    cost: float | None
    seed: int | None
    files: Mapping[str, ObjectRecord]
    pushed_at: str | None = None
    pushed_by: str | None = None

    @classmethod
    def from_meta(cls, data: Any, where: str) -> CachedResult:
        try:
            if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
                raise ValueError("unknown format version")
            pixels = data.get("pixels") or {}  # frames' pixel digests, from scheme 2 on
            files = {
                name: ObjectRecord(
                    str(rec["path"]),
                    str(rec["sha256"]),
                    int(rec["size"]),
                    str(pixels[name]) if name in pixels else None,
                )
                for name, rec in data["files"].items()
            }
            if "clip" not in files:
                raise ValueError("no clip")
            return cls(
                fingerprint=str(data["fingerprint"]),
                provider=data.get("provider"),
                job_id=data.get("job_id"),
                cost=data.get("cost"),
                seed=data.get("seed"),
                files=files,
                pushed_at=data.get("pushed_at"),
                pushed_by=data.get("pushed_by"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise CacheError(
                f"{where} is malformed ({err}); push the scene again to repair it"
            ) from None

    def to_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "provider": self.provider,
            "job_id": self.job_id,
            "cost": self.cost,
            "seed": self.seed,
            "files": {name: asdict(rec) for name, rec in self.files.items()},
            "pushed_at": self.pushed_at,
            "pushed_by": self.pushed_by,
        }


@dataclass(frozen=True)
class Pushed:
    """What a push left in the cache."""

    entry: CachedResult  # ours, or an intact one already there (another generation, maybe)
    uploaded: bool  # False when that entry was already there: nothing was sent


def _meta_key(hexd: str) -> str:
    return f"clips/{hexd}/{META}"


class Entries:
    """The entry half of a `Cache` (mixed into it): look up, pull, push, list, collect."""

    store: Store
    url: str

    def _get_meta(self, fingerprint: str) -> tuple[CachedResult, str] | None:
        hexd = hex_of(fingerprint)
        got = self.store.get(_meta_key(hexd))
        if got is None:
            return None
        where = f"{self.url}: {_meta_key(hexd)}"
        try:
            data = json.loads(got[0])
        except ValueError:
            raise CacheError(f"{where} is not JSON; push the scene again to repair it") from None
        result = CachedResult.from_meta(data, where)
        if result.fingerprint != fingerprint:
            raise CacheError(f"{where} belongs to {result.fingerprint}, not {fingerprint}")
        return result, got[1]

    def lookup(self, fingerprint: str) -> CachedResult | None:
        """The entry's metadata, or None (a miss, including a half-pushed entry)."""
        got = self._get_meta(fingerprint)
        return got[0] if got else None

    def pull(self, fingerprint: str, dest: Mapping[str, Path]) -> CachedResult:
        """Download the named files (clip/first/last -> destination path), verify each one's
        sha256 and size, then rename them into place. On any error nothing is left behind."""
        result = self.lookup(fingerprint)
        if result is None:
            raise CacheError(f"{short(fingerprint)} is not in the cache at {self.url}")
        hexd = hex_of(fingerprint)
        temps: dict[str, Path] = {}
        try:
            for name, path in dest.items():
                record = result.files.get(name)
                if record is None:
                    raise CacheError(
                        f"the cache entry of {short(fingerprint)} has no {name!r} file "
                        f"(it has {', '.join(sorted(result.files))})"
                    )
                temps[name] = _part_file(path)
                self.store.download(f"clips/{hexd}/{record.path}", temps[name], record.size)
                _verify(temps[name], record, fingerprint)
            for name, path in dest.items():
                os.replace(temps.pop(name), path)
        finally:
            for left in temps.values():
                with contextlib.suppress(FileNotFoundError):
                    left.unlink()
        return result

    def pull_many(
        self, wanted: Mapping[str, Mapping[str, Path]], *, workers: int = 16
    ) -> dict[str, CachedResult | CacheError]:
        """Pull several entries at once (fingerprint -> dest mapping) with a thread pool."""

        def one(fingerprint: str) -> CachedResult | CacheError:
            try:
                return self.pull(fingerprint, wanted[fingerprint])
            except CacheError as err:
                return err

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            return dict(zip(wanted, pool.map(one, wanted), strict=True))

    def _intact(self, result: CachedResult) -> bool:
        hexd = hex_of(result.fingerprint)
        for record in result.files.values():
            got = self.store.head(f"clips/{hexd}/{record.path}")
            if got is None or got[0] != record.size or got[1] not in (None, record.sha256):
                return False
        return True

    def push(self, fingerprint: str, files: Mapping[str, Path], meta: Mapping[str, Any]) -> Pushed:
        """Upload a finished scene (files: clip -> MP4, first/last -> PNG; meta: provider,
        job_id, cost, seed, and anything else JSON).

        Idempotent: when an intact entry is already there, nothing is uploaded and that entry
        is returned (it may be another generation of the same fingerprint: compare sha256). A
        half-pushed or damaged entry is repaired."""
        hexd = hex_of(fingerprint)
        if "clip" not in files:
            raise CacheError(f"push of {short(fingerprint)} has no clip")
        if meta.get("fingerprint") not in (None, fingerprint):
            raise CacheError(f"push of {fingerprint} with meta of {meta.get('fingerprint')}")
        records = _records(files)
        data = _meta_json(fingerprint, records, meta)
        ours = CachedResult.from_meta(json.loads(data), "meta")
        for _attempt in range(4):
            current = self._get_meta(fingerprint)
            if current is not None and self._intact(current[0]):
                return Pushed(current[0], uploaded=False)
            for name, record in records.items():
                self.store.upload(f"clips/{hexd}/{record.path}", files[name], record.sha256)
            try:
                if current is None:
                    self.store.put(_meta_key(hexd), data, if_none_match=True)
                else:  # a damaged entry: replace its meta, unless someone else just did
                    self.store.put(_meta_key(hexd), data, if_match=current[1])
            except PreconditionFailed:
                continue  # another push won the race; look at what it left
            if self._intact(ours):
                return Pushed(ours, uploaded=True)
            # a concurrent push overwrote our files after we wrote meta.json: go round again
        raise CacheError(
            f"could not push {short(fingerprint)}: concurrent pushes of different files for "
            "it kept overwriting each other; try again"
        )

    def _entries(self) -> dict[str, dict[str, float]]:
        """hex -> {object name: modified} for every entry folder, complete or not."""
        entries: dict[str, dict[str, float]] = {}
        for key, modified in self.store.list("clips/"):
            parts = key.split("/")
            if len(parts) == 3 and re.fullmatch(r"[0-9a-f]{64}", parts[1]):
                entries.setdefault(parts[1], {})[parts[2]] = modified
        return entries

    def ls(self) -> list[CachedResult]:
        """Every complete entry, sorted by fingerprint (malformed ones are skipped)."""
        complete = [h for h, objs in self._entries().items() if META in objs]

        def one(hexd: str) -> CachedResult | None:
            try:
                return self.lookup(f"sha256:{hexd}")
            except CacheError as err:
                if "is malformed" in str(err) or "is not JSON" in str(err):
                    return None
                raise

        with ThreadPoolExecutor(max_workers=16) as pool:
            return [r for r in pool.map(one, sorted(complete)) if r is not None]

    def _remove_entries(
        self, keep: Collection[str], leased: Collection[str], *, dry_run: bool, grace: float
    ) -> list[str]:
        """Delete every entry whose fingerprint is not in `keep` (meta.json first, so it turns
        into a miss at once). A half-pushed entry is left alone while it is younger than `grace`
        seconds or its hex is in `leased` (its push may be under way)."""
        keep_hex = {hex_of(fp) for fp in keep}
        now_ = time.time()
        removed: list[str] = []
        for hexd, objects in sorted(self._entries().items()):
            if hexd in keep_hex:
                continue
            if META not in objects and (hexd in leased or now_ - max(objects.values()) < grace):
                continue
            removed.append(f"sha256:{hexd}")
            if dry_run:
                continue
            for name in sorted(objects, key=lambda name: name != META):  # meta.json first
                self.store.delete(f"clips/{hexd}/{name}")
        return removed


def _part_file(path: Path) -> Path:
    """An empty temp file beside `path`, for a download that is renamed into place verified."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        os.close(fd)
    except OSError as err:
        raise CacheError(f"cannot write {path}: {err.strerror or err}") from None
    return Path(tmp)


def _verify(path: Path, record: ObjectRecord, fingerprint: str) -> None:
    sha, size = file_digest(path)
    if (sha, size) != (record.sha256, record.size):
        raise CacheError(
            f"the cache entry of {short(fingerprint)} is corrupt: {record.path} is {size} "
            f"bytes with sha256 {sha[:12]}…, its meta.json says {record.size} bytes with "
            f"sha256 {record.sha256[:12]}…; nothing was written — push the scene again or gc "
            "the entry"
        )


def _records(files: Mapping[str, Path]) -> dict[str, ObjectRecord]:
    records: dict[str, ObjectRecord] = {}
    for name, path in files.items():
        if name not in OBJECTS:
            raise CacheError(f"unknown cache file {name!r} (expected {', '.join(OBJECTS)})")
        try:
            sha, size = file_digest(path)
        except OSError as err:
            raise CacheError(f"cannot read {path}: {err.strerror or err}") from None
        records[name] = ObjectRecord(OBJECTS[name], sha, size)
    return records


def _meta_json(
    fingerprint: str, records: Mapping[str, ObjectRecord], meta: Mapping[str, Any]
) -> bytes:
    body = {k: v for k, v in meta.items() if k not in _RESERVED}
    body |= {
        "version": FORMAT_VERSION,
        "fingerprint": fingerprint,
        "files": {name: asdict(rec) for name, rec in sorted(records.items())},
        "pushed_at": now(),
        "pushed_by": default_holder(),
    }
    try:
        return json.dumps(body, indent=2, sort_keys=True).encode()
    except (TypeError, ValueError) as err:
        raise CacheError(f"push of {short(fingerprint)}: meta is not JSON ({err})") from None
