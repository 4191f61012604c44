"""Shared-cache leases that must hold while a job runs: the TTL setting, and a lease whose job
cannot be recorded in it. A second copy of the storyboard must never pay again meanwhile."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import provider_env

from hailuo_pipe.cache_s3 import open_s3_store
from hailuo_pipe.emulator import Emulator
from hailuo_pipe.errors import SettingError
from hailuo_pipe.sharing import lease_ttl

SPEC = """
version: 1
name: leased
scenes:
  - id: s1
    provider: wavespeed
    prompt: "[Static shot] a lighthouse"
    image: https://example.com/lighthouse.jpg
"""


@pytest.mark.parametrize("raw", ["0", "-5", "nan", "inf", "-inf", "abc", "29", "1e12", "86401"])
def test_a_bad_lease_ttl_is_a_usage_error_before_anything_is_sent(
    raw: str, write_spec, tmp_path: Path, emulator: Emulator
) -> None:
    spec = write_spec(SPEC)
    env = {
        **os.environ,
        **provider_env(emulator),
        "HAILUO_PIPE_CACHE": (tmp_path / "cache").as_uri(),
        "HAILUO_PIPE_LEASE_TTL": raw,
    }
    run = subprocess.run(
        [sys.executable, "-m", "hailuo_pipe", "render", str(spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip() == (
        "error: HAILUO_PIPE_LEASE_TTL must be a number of seconds from 30 to 86400 (1 day), "
        f"not {raw!r}; unset it for the default 600 (nothing was submitted)"
    )
    assert "Traceback" not in run.stderr
    assert emulator.requests() == []
    assert not spec.with_suffix(".lock").exists()


@pytest.mark.parametrize(("raw", "ttl"), [("", 600.0), ("30", 30.0), (" 90.5 ", 90.5)])
def test_lease_ttl_in_range_is_taken(raw: str, ttl: float) -> None:
    assert lease_ttl({"HAILUO_PIPE_LEASE_TTL": raw}) == ttl
    assert lease_ttl({"HAILUO_PIPE_LEASE_TTL": "86400"}) == 86400.0


@pytest.mark.parametrize("raw", ["0", "-1", "abc", "1e3", "100", "٣"])
def test_aws_max_attempts_out_of_range_is_a_usage_error(raw: str) -> None:
    pytest.importorskip("boto3")
    env = {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_MAX_ATTEMPTS": raw}
    with pytest.raises(SettingError, match="AWS_MAX_ATTEMPTS must be a whole number from 1 to 20"):
        open_s3_store("bucket", "prefix", env)
