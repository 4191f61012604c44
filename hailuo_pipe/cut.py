"""The final cut: the storyboard's `output.sequence` joined into one file, reused when unchanged."""

from __future__ import annotations

import hashlib

from hailuo_pipe import collector, media
from hailuo_pipe.errors import CutNotReady
from hailuo_pipe.state.lockfile import FileRecord, Lockfile
from hailuo_pipe.storyboard.images import sha256_file
from hailuo_pipe.storyboard.model import Storyboard


def cut_fingerprint(board: Storyboard, lock: Lockfile) -> str:
    assert board.output is not None and board.cut_path is not None
    digest = hashlib.sha256(board.cut_path.encode())
    for scene_id in board.output.sequence:
        record = lock.scenes[scene_id].output
        assert record is not None
        digest.update(f"\n{scene_id}:{record.sha256}".encode())
    return "sha256:" + digest.hexdigest()


def assemble(board: Storyboard, lock: Lockfile) -> str:
    """Write the cut (or keep the existing one); returns its path relative to the spec."""
    collector.resume()
    assert board.output is not None
    missing = [
        s for s in board.output.sequence if s not in lock.scenes or lock.scenes[s].state != "done"
    ]
    if missing:
        raise CutNotReady(f"the cut needs scenes that are not rendered yet: {', '.join(missing)}")
    base = board.path.parent
    fingerprint = cut_fingerprint(board, lock)
    path = board.cut_path
    assert path is not None
    dest = base / path
    if (
        lock.cut is not None
        and lock.cut_fingerprint == fingerprint
        and lock.cut.path == path
        and _intact(board, lock.cut)
    ):
        return path
    clips = []
    for scene_id in board.output.sequence:
        record = lock.scenes[scene_id].output
        assert record is not None
        clips.append(base / record.path)
    media.stitch(clips, dest)
    lock.cut = FileRecord(path, sha256_file(dest), dest.stat().st_size)
    lock.cut_fingerprint = fingerprint
    lock.save()
    return path


def _intact(board: Storyboard, record: FileRecord) -> bool:
    path = board.path.parent / record.path
    return path.is_file() and path.stat().st_size == record.size
