"""Opening a cache: what is missing or wrong is said plainly, and no secret is ever shown."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.caches import fp
from support.s3_fixture import s3_environ

from hailuo_pipe.cache import CacheError, FileStore, open_cache
from hailuo_pipe.cache.s3_store import open_s3_store
from hailuo_pipe.errors import ConfigError, SettingError


def test_config_errors_never_show_secrets():
    pytest.importorskip("boto3")
    with pytest.raises(ConfigError, match="no bucket"):
        open_cache("s3:///prefix", {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"})
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID") as info:
        open_cache("s3://bucket/p", {"AWS_SECRET_ACCESS_KEY": "TOPSECRET"})
    assert "TOPSECRET" not in str(info.value)
    assert "AWS_SECRET_ACCESS_KEY" not in str(info.value).split("set ")[1].split(" (")[0]
    with pytest.raises(ConfigError, match="expected s3://"):
        open_cache("gs://bucket/p", {})
    with pytest.raises(ConfigError, match="three slashes"):
        open_cache("file://relative/path", {})


def test_a_plain_path_is_a_folder_cache(tmp_path: Path):
    assert open_cache(str(tmp_path / "c")).url == (tmp_path / "c").as_uri()


@pytest.mark.parametrize("raw", ["0", "-1", "abc", "1e3", "100", "٣"])
def test_aws_max_attempts_out_of_range_is_a_usage_error(raw: str) -> None:
    pytest.importorskip("boto3")
    env = {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_MAX_ATTEMPTS": raw}
    with pytest.raises(SettingError, match="AWS_MAX_ATTEMPTS must be a whole number from 1 to 20"):
        open_s3_store("bucket", "prefix", env)


def test_s3_missing_bucket_and_unreachable_endpoint(s3_server: str):
    env = s3_environ(s3_server)
    cache = open_cache("s3://no-such-bucket-here/x", env)
    with pytest.raises(CacheError, match="does not exist"):
        cache.lookup(fp(1))
    with pytest.raises(CacheError, match="does not exist"):
        cache.check()
    secret = "S3CR3T-never-printed"
    closed = {
        **env,
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_MAX_ATTEMPTS": "1",
    }
    with pytest.raises(CacheError, match="unreachable") as info:
        open_cache("s3://bucket-x/p", closed).lookup(fp(1))
    assert secret not in str(info.value)


def test_a_folder_caches_objects_are_readable_by_the_team_that_shares_it(tmp_path: Path) -> None:
    """Made as `open()` makes a file, under the umask (a team's 002 gives 0664), never 0600."""
    old = os.umask(0o002)
    try:
        store = FileStore(tmp_path)
        store.put("objects/ab/clip.mp4", b"clip")
        store.put("leases/ab", b"lease", if_none_match=True)  # under the folder's .cas.lock
    finally:
        os.umask(old)
    [made] = [p for p in tmp_path.rglob("*") if p.is_file() and p.name == "clip.mp4"]
    assert made.stat().st_mode & 0o777 == 0o664
    # every member opens the lock for writing: a 0644 one let only its creator lease a job
    assert (tmp_path / ".cas.lock").stat().st_mode & 0o777 == 0o664


def test_a_folder_caches_lock_is_never_opened_through_a_symlink(tmp_path: Path) -> None:
    """Whoever can write the shared folder must not make a render create a file elsewhere."""
    cache, outside = tmp_path / "cache", tmp_path / "outside"
    cache.mkdir()
    outside.mkdir()
    (cache / ".cas.lock").symlink_to(outside / "planted")
    with pytest.raises(CacheError, match=r"cannot lock \.cas\.lock"):
        FileStore(cache).put("leases/ab", b"lease", if_none_match=True)
    assert not (outside / "planted").exists()
