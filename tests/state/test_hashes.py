"""Content hashes remembered between runs, and requests already checked against their schema."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from hailuo_pipe.storyboard import images, schemas


@pytest.fixture
def fresh_stores():
    """Each step below stands for a new process: no in-memory memo survives."""

    def restart() -> None:
        images._save_hashes()
        images._STORES.clear()
        images._sha256.cache_clear()

    yield restart
    images._STORES.clear()
    images._sha256.cache_clear()


def _old_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    os.utime(path, (1_700_000_000, 1_700_000_000))  # not "racily clean"
    return path


def test_hash_is_remembered_while_the_file_is_unchanged(tmp_path: Path, fresh_stores) -> None:
    clip = _old_file(tmp_path / "a.mp4", b"clip one")
    images.remember_hashes(tmp_path)
    assert images.sha256_file(clip) == hashlib.sha256(b"clip one").hexdigest()
    fresh_stores()

    store = tmp_path / ".hashes.json"
    data = json.loads(store.read_text())
    data["a.mp4"][4] = "remembered"  # proves the next run reads the store, not the file
    store.write_text(json.dumps(data))
    images.remember_hashes(tmp_path)
    assert images.sha256_file(clip) == "remembered"
    fresh_stores()

    _old_file(clip, b"clip two")  # same size, same mtime: ctime and inode still tell
    images.remember_hashes(tmp_path)
    assert images.sha256_file(clip) == hashlib.sha256(b"clip two").hexdigest()


def test_a_fresh_file_is_remembered_once_its_tick_is_over_if_unchanged(
    tmp_path: Path, fresh_stores
) -> None:
    """What a render writes and hashes (its frames) is remembered as it exits, so the first
    rerun reads none of them again."""
    frame = tmp_path / "new.png"
    frame.write_bytes(b"just written")
    images.remember_hashes(tmp_path)
    images.sha256_file(frame)
    fresh_stores()
    data = json.loads((tmp_path / ".hashes.json").read_text())
    assert data["new.png"][4] == hashlib.sha256(b"just written").hexdigest()


def test_a_fresh_file_changed_after_it_was_hashed_is_not_remembered(
    tmp_path: Path, fresh_stores
) -> None:
    clip = tmp_path / "new.mp4"
    clip.write_bytes(b"version 1")
    images.remember_hashes(tmp_path)
    images.sha256_file(clip)
    time.sleep(images._HashStore.TICK * 2)
    clip.write_bytes(b"version 2")  # the same size, a later tick: another mtime
    fresh_stores()
    assert not (tmp_path / ".hashes.json").exists()


def test_a_fresh_file_with_a_whole_second_mtime_is_not_remembered(
    tmp_path: Path, fresh_stores
) -> None:
    """Whole seconds are what a coarse filesystem (FAT, HFS+, some network mounts) records:
    there a change within the same second keeps the mtime, so fresh files wait for a rerun."""
    clip = tmp_path / "new.mp4"
    clip.write_bytes(b"just written")
    second = int(time.time())
    os.utime(clip, ns=(second * 10**9, second * 10**9))
    images.remember_hashes(tmp_path)
    images.sha256_file(clip)
    fresh_stores()
    assert not (tmp_path / ".hashes.json").exists()


def test_a_downloaded_clip_is_remembered_by_the_hash_of_what_was_written(
    tmp_path: Path, fresh_stores
) -> None:
    clip = tmp_path / "s01.mp4"
    clip.write_bytes(b"downloaded")
    images.remember_hashes(tmp_path)
    images.remember_written(clip, "sha-of-the-stream")  # as download() does, no second read
    fresh_stores()
    images.remember_hashes(tmp_path)
    assert images.sha256_file(clip) == "sha-of-the-stream"


def test_a_garbled_store_only_costs_time(tmp_path: Path, fresh_stores) -> None:
    clip = _old_file(tmp_path / "a.mp4", b"x")
    (tmp_path / ".hashes.json").write_text("{not json")
    images.remember_hashes(tmp_path)
    assert images.sha256_file(clip) == hashlib.sha256(b"x").hexdigest()


def test_request_memo_skips_only_requests_found_valid(tmp_path: Path, monkeypatch) -> None:
    good = [{"taskType": "videoInference"}]  # shape is irrelevant here: we count calls
    memo_file = tmp_path / "checked"
    memo = schemas.SchemaMemo(memo_file)
    first = memo.errors("runware", good)
    assert first  # incomplete: runware's schema refuses it, so nothing is remembered
    memo.save()
    assert not memo_file.exists()

    calls = []
    monkeypatch.setattr(schemas, "request_errors", lambda p, b: calls.append(p) or [])
    memo = schemas.SchemaMemo(memo_file)
    assert memo.errors("runware", good) == []
    memo.save()
    again = schemas.SchemaMemo(memo_file)
    assert again.errors("runware", good) == []
    assert again.errors("wavespeed", good) == []  # another schema: checked anew
    assert calls == ["runware", "wavespeed"]


def test_schema_memo_skips_only_documents_found_valid(tmp_path: Path, monkeypatch) -> None:
    from hailuo_pipe.storyboard.yamldoc import load_text

    good, _ = load_text("version: 1\nname: a\nscenes:\n  - id: x\n    prompt: p\n", "a.yaml")
    bad, _ = load_text("version: 1\nname: a\nscenes: []\nextra: 1\n", "a.yaml")
    memo_file = tmp_path / "checked"
    memo = schemas.SchemaMemo(memo_file)
    assert memo.document_problems(good) == []
    assert memo.document_problems(bad)
    memo.save()

    checked, explained = [], []
    real_fast, real_slow = schemas.valid_fast, schemas.validate_document
    monkeypatch.setattr(
        schemas, "valid_fast", lambda n, d: checked.append(d) or real_fast(n, d)
    )
    monkeypatch.setattr(
        schemas, "validate_document", lambda d: explained.append(d) or real_slow(d)
    )
    again = schemas.SchemaMemo(memo_file)
    assert again.document_problems(good) == []  # remembered: not checked again
    assert again.document_problems(bad)  # never remembered: checked, and still refused
    good.data["name"] = "b"
    assert again.document_problems(good) == []  # a changed document is checked anew
    assert checked == [bad.data, good.data]
    assert explained == [bad]  # jsonschema only for the one the fast check refused


def test_a_schema_memo_waits_for_the_render_folder_and_never_makes_it(tmp_path: Path) -> None:
    """A first render validates before its render folder exists; the memo is written as the
    process exits once the render made it, so the first rerun puts nothing through jsonschema
    again. Validating alone never creates the folder."""
    never = schemas.SchemaMemo(tmp_path / "renders" / "never" / ".checked-requests")
    made = schemas.SchemaMemo(tmp_path / "renders" / "made" / ".checked-requests")
    for memo in (never, made):
        memo._used.add("digest")
        memo.save()
    assert not (tmp_path / "renders").exists()
    (tmp_path / "renders" / "made").mkdir(parents=True)  # the render, meanwhile
    schemas._save_pending()  # what happens at exit
    assert (tmp_path / "renders" / "made" / ".checked-requests").read_text() == "digest\n"
    assert not (tmp_path / "renders" / "never").exists()
