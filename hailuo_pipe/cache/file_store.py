"""The folder backend of the result cache: a local (or shared-mount) directory.

Conditional writes run under an flock on ``.cas.lock``; a conditional create publishes a
complete temp file with ``link()`` (atomic, fails with EEXIST like ``O_CREAT|O_EXCL`` but never
exposes a half-written file); every other write is a temp file + fsync + rename.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from hailuo_pipe.cache.records import file_digest
from hailuo_pipe.cache.store import PreconditionFailed
from hailuo_pipe.errors import CacheError
from hailuo_pipe.state.files import write_temp


class FileStore:
    """A cache kept in the folder `root` (see the module's docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = root.as_uri()

    def _path(self, key: str) -> Path:
        return self.root / key

    @contextlib.contextmanager
    def _errors(self, action: str, key: str) -> Iterator[None]:
        try:
            yield
        except PermissionError as err:
            raise CacheError(
                f"{self.url}: permission denied while {action} {key} ({err.strerror})"
            ) from None
        except FileNotFoundError:
            raise
        except OSError as err:
            raise CacheError(f"{self.url}: cannot {action} {key}: {err.strerror or err}") from None

    @contextlib.contextmanager
    def _cas(self) -> Iterator[None]:
        with self._errors("lock", ".cas.lock"):
            self.root.mkdir(parents=True, exist_ok=True)
            # 0666 under the umask: every user of a shared folder must open it for writing;
            # never through a symlink, which could make us create a file anywhere
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(self.root / ".cas.lock", flags, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @staticmethod
    def _etag(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()[:32]

    def get(self, key: str) -> tuple[bytes, str] | None:
        with self._errors("read", key):
            try:
                data = self._path(key).read_bytes()
            except FileNotFoundError:
                return None
        return data, self._etag(data)

    def put(
        self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None
    ) -> str:
        path = self._path(key)
        with self._errors("write", key):
            tmp = write_temp(path, lambda f: f.write(data))
            try:
                if not if_none_match and if_match is None:
                    os.replace(tmp, path)
                    return self._etag(data)
                with self._cas():
                    if if_none_match:
                        try:
                            os.link(tmp, path)
                        except FileExistsError:
                            raise PreconditionFailed(key) from None
                    else:
                        current = self.get(key)
                        if current is None or current[1] != if_match:
                            raise PreconditionFailed(key)
                        os.replace(tmp, path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        return self._etag(data)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        path = self._path(key)
        with self._errors("delete", key):
            if if_match is None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            else:
                with self._cas():
                    current = self.get(key)
                    if current is None:
                        return
                    if current[1] != if_match:
                        raise PreconditionFailed(key)
                    path.unlink()
            # drop the entry's folder once it is empty (never the root's own folders)
            with contextlib.suppress(OSError):
                if path.parent != self.root and path.parent.parent != self.root:
                    path.parent.rmdir()

    def upload(self, key: str, path: Path, sha256: str) -> None:
        dest = self._path(key)
        with self._errors("write", key):
            tmp = write_temp(dest, lambda f: _copy_from(path, f))
            try:
                os.replace(tmp, dest)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()

    def download(self, key: str, dest: Path, size: int | None = None) -> None:
        with self._errors("read", key):
            try:
                shutil.copyfile(self._path(key), dest)
            except FileNotFoundError:
                raise CacheError(f"{self.url}: {key} is missing from the cache") from None

    def head(self, key: str) -> tuple[int, str | None] | None:
        with self._errors("read", key):
            try:
                sha, size = file_digest(self._path(key))
            except FileNotFoundError:
                return None
        return size, sha

    def list(self, prefix: str) -> Iterator[tuple[str, float]]:
        base = self._path(prefix)
        with self._errors("list", prefix):
            for dirpath, _dirs, names in os.walk(base):
                for name in names:
                    if name.startswith("."):
                        continue  # temp files and the lock
                    path = Path(dirpath) / name
                    with contextlib.suppress(FileNotFoundError):
                        yield path.relative_to(self.root).as_posix(), path.stat().st_mtime

    def check(self) -> None:
        # plan, status and validate check the cache too and must write nothing: a missing
        # folder is an empty cache, made by the first write; what must hold is that it can be
        with self._errors("use", "the cache folder"):
            folder = self.root
            while not folder.exists() and folder.parent != folder:
                folder = folder.parent
            if not folder.is_dir():
                raise CacheError(f"{self.url}: {folder} is not a folder")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise CacheError(f"{self.url}: permission denied: {folder} is not writable")

    def remove_stale_temps(self, grace: float) -> None:
        """Delete the temp files of writes that were killed before their rename, once they are
        older than `grace` seconds (a younger one may belong to a write under way)."""
        now = time.time()
        with self._errors("list", "temp files"):
            for dirpath, _dirs, names in os.walk(self.root):
                for name in names:
                    if not (name.startswith(".") and name.endswith(".tmp")):
                        continue
                    path = Path(dirpath) / name
                    with contextlib.suppress(FileNotFoundError):
                        if now - path.lstat().st_mtime >= grace:
                            path.unlink()


def _copy_from(source: Path, out: BinaryIO) -> None:
    with source.open("rb") as f:
        shutil.copyfileobj(f, out)
