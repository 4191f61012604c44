"""A shared, content-addressed cache of finished scenes, and leases so no scene is paid for twice.

A scene's fingerprint (``sha256:HEX``: provider + exact request + input image hashes) names its
entry; the cache knows nothing else of storyboards. Its root is ``s3://bucket/prefix`` or
``file:///path``. The modules, bottom up:

    store.py        the Store protocol and the keys (clips/<hex>/..., leases/<hex>.json)
    records.py      what is recorded of a file, and the one streaming digest
    file_store.py   a folder;  s3_store.py: any S3-protocol service (boto3, imported for s3://)
    entries.py      CachedResult and meta.json: lookup, pull, push, ls, and removing entries
    leases.py       Lease: acquire, take over, record a job, renew, release
    __init__.py     Cache (entries + leases), open_cache

What a render does with it is in `render/shared.py`; `hailuo-pipe cache ...` is `sync.py`.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

from hailuo_pipe.cache.entries import OBJECTS, CachedResult, Entries, Pushed
from hailuo_pipe.cache.file_store import FileStore
from hailuo_pipe.cache.leases import Lease, Leases
from hailuo_pipe.cache.records import ObjectRecord
from hailuo_pipe.cache.store import Store, default_holder
from hailuo_pipe.errors import CacheError, ConfigError, LeaseHeld, LeaseLost

__all__ = [
    "OBJECTS",
    "Cache",
    "CacheError",
    "CachedResult",
    "FileStore",
    "Lease",
    "LeaseHeld",
    "LeaseLost",
    "ObjectRecord",
    "Pushed",
    "Store",
    "default_holder",
    "open_cache",
]


class Cache(Entries, Leases):
    """A result cache over a Store (see `open_cache`). Thread-safe: share one per process."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.url = store.url

    def __repr__(self) -> str:
        return f"Cache({self.url!r})"

    def check(self) -> None:
        """Fail early (CacheError) when the cache cannot be reached or used."""
        self.store.check()

    def claim(
        self,
        fingerprint: str,
        holder: str | None = None,
        ttl: float = 600.0,
        *,
        provider: str | None = None,
    ) -> CachedResult | Lease:
        """The cached result, or a Lease of our own (maybe taken over: `lease.resumed` then
        tells to resume `lease.job_id`); LeaseHeld while someone else holds an unexpired lease."""
        result = self.lookup(fingerprint)
        if result is not None:
            return result
        lease = self.acquire(fingerprint, holder, ttl, provider=provider)
        # the previous holder may have pushed and released just before we acquired
        result = self.lookup(fingerprint)
        if result is not None:
            lease.release()
            return result
        return lease

    def gc(
        self, keep: Collection[str], *, dry_run: bool = False, grace: float = 3600.0
    ) -> list[str]:
        """Delete every entry whose fingerprint is not in `keep`, and every expired lease. A
        half-pushed entry is left alone while it is younger than `grace` seconds or its scene
        is leased (its push may be under way). Returns the fingerprints of the deleted
        entries; with `dry_run`, of those that would be."""
        live = self._sweep_leases(dry_run=dry_run)
        if isinstance(self.store, FileStore) and not dry_run:
            self.store.remove_stale_temps(grace)  # an object store writes whole: it has none
        return self._remove_entries(keep, live, dry_run=dry_run, grace=grace)


def open_cache(url: str, environ: Mapping[str, str] | None = None) -> Cache:
    """``s3://bucket/prefix`` (credentials and endpoint from AWS_* variables) or
    ``file:///path`` (a plain path works too). ConfigError when something is missing."""
    env = os.environ if environ is None else environ
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        if parts.scheme == "file" and parts.netloc not in ("", "localhost"):
            raise ConfigError(f"cache URL {url!r}: use file:///absolute/path (three slashes)")
        path = unquote(parts.path) if parts.scheme else url
        if not path:
            raise ConfigError(f"cache URL {url!r} has no path")
        return Cache(FileStore(Path(path).expanduser().absolute()))
    if parts.scheme == "s3":
        from hailuo_pipe.cache.s3_store import open_s3_store  # needs boto3, slow to import

        return Cache(open_s3_store(parts.netloc, parts.path.strip("/"), env))
    raise ConfigError(f"cache URL {url!r}: expected s3://BUCKET/PREFIX or file:///PATH")
