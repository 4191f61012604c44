"""Content hashes remembered between runs, and requests already checked against their schema."""

from __future__ import annotations

import hashlib
import json
import os
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


def test_fresh_files_are_not_remembered(tmp_path: Path, fresh_stores) -> None:
    clip = tmp_path / "new.mp4"
    clip.write_bytes(b"just written")
    images.remember_hashes(tmp_path)
    images.sha256_file(clip)
    fresh_stores()
    assert not (tmp_path / ".hashes.json").exists()


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

    calls = []
    real = schemas.validate_document
    monkeypatch.setattr(schemas, "validate_document", lambda d: calls.append(d) or real(d))
    again = schemas.SchemaMemo(memo_file)
    assert again.document_problems(good) == []  # remembered: not checked again
    assert again.document_problems(bad)  # never remembered: checked, and still refused
    good.data["name"] = "b"
    assert again.document_problems(good) == []  # a changed document is checked anew
    assert calls == [bad, good]
