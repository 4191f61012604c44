"""Answers from a hostile or broken provider, served by the emulator over real HTTP: whatever
comes back, no key is shown in any encoding, no control character reaches the terminal, no
request goes to a path an answer chose, memory and time stay bounded, and a paid job is never
lost (its id is kept, so the clip is fetched again for free).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from conftest import provider_env

from hailuo_pipe.emulator import Emulator
from hailuo_pipe.errors import ConfigError
from hailuo_pipe.execute import RenderOptions, render
from hailuo_pipe.lockfile import Lockfile
from hailuo_pipe.providers import get
from hailuo_pipe.redact import printable, redact
from hailuo_pipe.validate import load_storyboard

ONE = """
version: 1
name: one
scenes:
  - id: s
    provider: wavespeed
    prompt: "[Static shot] a lighthouse"
    image: https://example.com/lighthouse.jpg
"""


def cli(spec: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hailuo_pipe", "render", *args, str(spec)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def opts(emu: Emulator, **kw: object) -> RenderOptions:
    return RenderOptions(environ=provider_env(emu), concurrency=2, **kw)  # type: ignore[arg-type]


# -- keys ---------------------------------------------------------------------------------------


KEY = "sk-live-Zq9+/xYw=abc123"


@pytest.mark.parametrize(
    "text",
    [
        KEY,
        base64.b64encode(KEY.encode()).decode(),
        base64.b64encode(f"Bearer {KEY}".encode()).decode(),
        base64.b64encode(f"Key {KEY}".encode()).decode(),
        base64.b64encode(f"Authorization: Bearer {KEY}".encode()).decode(),
        base64.urlsafe_b64encode(f"x-Bearer {KEY}".encode()).decode(),
        quote(KEY, safe=""),
        quote_plus(KEY),
        json.dumps({"k": KEY}),
        KEY.encode().hex(),
        KEY.encode().hex().upper(),
    ],
)
def test_a_key_is_masked_in_every_encoding(text: str) -> None:
    masked = redact(f"error: {text} !", environ={"WAVESPEED_API_KEY": KEY})
    assert "***" in masked
    # no run of the key's encodings survives: check the decoded views of what is left
    assert KEY not in masked and KEY[4:12] not in masked
    for token in masked.split():
        for decode in (base64.b64decode, base64.urlsafe_b64decode, bytes.fromhex):
            with contextlib.suppress(ValueError):
                assert KEY[4:12].encode() not in decode(token + "==")


@pytest.mark.parametrize("form", ["raw", "base64", "hex", "url", "json"])
def test_a_provider_echoing_the_header_in_any_encoding_never_shows_the_key(
    write_spec, emulator: Emulator, form: str
) -> None:
    spec = write_spec(ONE)
    emulator.configure(echo_auth=form)
    done = cli(spec, provider_env(emulator))
    assert done.returncode == 1, done.stderr
    assert "bad credentials" in done.stderr
    header = f"Bearer {emulator.key}".encode()
    for leak in (emulator.key, base64.b64encode(header).decode(), header.hex()):
        assert leak not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "key", ["sk-é-non-ascii", "sk-abc\ndef", "sk-abc\x1bdef", "sk\tabc", "sk-abc\x7f"]
)
def test_a_key_no_header_can_carry_is_refused_before_sending(
    write_spec, emulator: Emulator, key: str
) -> None:
    spec = write_spec(ONE)
    env = {**provider_env(emulator), "WAVESPEED_API_KEY": key}
    done = cli(spec, env)
    assert done.returncode == 1
    assert "WAVESPEED_API_KEY" in done.stderr and "Traceback" not in done.stderr
    assert key.strip() not in done.stderr and "abc" not in done.stderr
    assert emulator.requests() == []
    assert emulator.jobs()["total"] == 0
    with pytest.raises(ConfigError, match="WAVESPEED_API_KEY"):
        get("wavespeed").from_env({"WAVESPEED_API_KEY": key})


def test_whitespace_around_a_key_is_stripped_not_refused() -> None:
    provider = get("wavespeed").from_env({"WAVESPEED_API_KEY": "  sk-ok \n"})
    assert provider.auth_headers() == {"Authorization": "Bearer sk-ok"}


# -- job ids and control characters -------------------------------------------------------------


@pytest.mark.parametrize(
    "job_id", ["../../../../etc/passwd", "abc\r\nX-Evil: 1", "abc\x1b]0;pwned\x07", "a b"]
)
def test_an_odd_job_id_is_parked_never_sent_and_adoptable(
    write_spec, emulator: Emulator, job_id: str
) -> None:
    spec = write_spec(ONE)
    emulator.configure(job_id=job_id)
    done = cli(spec, provider_env(emulator))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "\x1b" not in done.stderr and "\r" not in done.stderr
    assert "--adopt s=" in done.stderr
    # one paid submit; no poll, nothing at a path the answer chose
    assert emulator.jobs()["total"] == 1
    assert [r["kind"] for r in emulator.requests()] == ["submit"]
    assert not any("passwd" in r["path"] for r in emulator.requests())
    entry = Lockfile.load(spec.with_suffix(".lock"), "one").scenes["s"]
    assert entry.state == "unknown" and entry.job_id is None
    assert "\x1b" not in (entry.error or "") and "\r" not in (entry.error or "")
    # the real job is found at the provider and adopted: fetched, never paid again
    real = next(j["id"] for j in emulator.job_list())
    emulator.configure(job_id=None)
    done = cli(spec, provider_env(emulator), "--adopt", f"s={real}")
    assert done.returncode == 0, done.stderr
    assert emulator.jobs()["total"] == 1


def test_an_odd_job_id_in_an_old_lockfile_waits_on_adopt(write_spec, emulator: Emulator) -> None:
    spec = write_spec(ONE)
    render(load_storyboard(spec), opts(emulator))
    lock_path = spec.with_suffix(".lock")
    data = json.loads(lock_path.read_text())
    scene = data["scenes"]["s"]
    real = scene["job_id"]
    scene.update(state="submitted", job_id="../../etc/passwd\x1b[2J", output=None, frames={})
    lock_path.write_text(json.dumps(data))
    for clip in spec.parent.rglob("*.mp4"):
        clip.unlink()
    before = len(emulator.requests())
    done = cli(spec, provider_env(emulator))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "\x1b" not in done.stderr and "--adopt" in done.stderr
    assert not any("passwd" in r["path"] for r in emulator.requests()[before:])
    done = cli(spec, provider_env(emulator), "--adopt", f"s={real}")
    assert done.returncode == 0, done.stderr
    assert emulator.jobs()["total"] == 1


def test_printable_escapes_terminal_controls() -> None:
    escaped = "a\\x1b]0;t\\x07b\\x1b[2J\\x0d\\x0a\\u202e"
    assert printable("a\x1b]0;t\x07b\x1b[2J\r\n\u202e") == escaped
    assert printable("one\ntwo", newlines=True) == "one\ntwo"
    assert printable("plain café") == "plain café"
