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
from support.emulator_fixture import provider_env

from hailuo_emulator import Emulator
from hailuo_pipe.errors import ConfigError
from hailuo_pipe.providers import get
from hailuo_pipe.redact import printable, redact
from hailuo_pipe.render import RenderOptions, render
from hailuo_pipe.state.lockfile import Lockfile
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


# -- answer sizes, depth and pace ---------------------------------------------------------------


def _fetched_again_for_free(spec: Path, emulator: Emulator) -> None:
    """The job id was kept: a rerun fetches the clip without a new paid job."""
    entry = Lockfile.load(spec.with_suffix(".lock"), "one").scenes["s"]
    assert entry.state == "submitted" and entry.job_id
    emulator.configure(
        answer_padding=0, deep_json=0, trickle_downloads=None, gzip_downloads=False,
        clip_path=None,
    )
    done = cli(spec, provider_env(emulator))
    assert done.returncode == 0, done.stderr
    assert emulator.jobs()["total"] == 1


def test_a_huge_poll_answer_is_refused_within_bounded_memory(
    write_spec, emulator: Emulator
) -> None:
    spec = write_spec(ONE)
    emulator.configure(answer_padding=64 * 1024**2)
    code = (
        "import resource, runpy, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1024 * 1024**2, 1024 * 1024**2))\n"
        "sys.argv = ['hailuo-pipe', 'render', sys.argv[1]]\n"
        "runpy.run_module('hailuo_pipe', run_name='__main__')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(spec)],
        env={**os.environ, **provider_env(emulator)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "larger than 4,194,304 bytes" in done.stderr and "Traceback" not in done.stderr
    _fetched_again_for_free(spec, emulator)


def test_json_nested_too_deep_is_a_provider_error(write_spec, emulator: Emulator) -> None:
    spec = write_spec(ONE)
    emulator.configure(deep_json=100_000)
    done = cli(spec, provider_env(emulator))
    assert done.returncode == 1, done.stderr
    assert "nested too deep" in done.stderr and "Traceback" not in done.stderr
    _fetched_again_for_free(spec, emulator)


def _finished_job_url(emulator: Emulator, write_spec) -> tuple[Path, str]:
    spec = write_spec(ONE)
    render(load_storyboard(spec), opts(emulator))
    job = next(j["id"] for j in emulator.job_list())
    return spec, f"{emulator.url}/_files/{job}.mp4"


def test_a_clip_written_in_several_pieces_lands_whole_with_its_hash(
    tmp_path: Path, write_spec, emulator: Emulator
) -> None:
    """A clip larger than the download's buffer is written in pieces (the partial file made by
    the first of them): what lands is every byte served, hashed as served, and no partial
    file is left beside it."""
    import asyncio
    import hashlib

    import httpx

    from hailuo_pipe.render import download as downloads

    _, url = _finished_job_url(emulator, write_spec)
    emulator.configure(output_bytes=3 * downloads.BUFFER + 12345)
    served = httpx.get(url).content
    assert len(served) > 3 * downloads.BUFFER

    async def fetch() -> downloads.Downloaded:
        async with httpx.AsyncClient(timeout=30) as client:
            return await downloads.download(client, url, tmp_path / "c.mp4", job_id="J1")

    got = asyncio.run(fetch())
    assert (tmp_path / "c.mp4").read_bytes() == served
    assert got.sha256 == hashlib.sha256(served).hexdigest() and got.size == len(served)
    assert not list(tmp_path.glob(".*.part"))


def test_a_trickling_download_meets_its_deadline_and_minimum_rate(
    tmp_path: Path, write_spec, emulator: Emulator
) -> None:
    import asyncio
    import time

    import httpx

    from hailuo_pipe.errors import DownloadError
    from hailuo_pipe.render.download import download

    _, url = _finished_job_url(emulator, write_spec)
    emulator.configure(trickle_downloads={"bytes": 1, "every": 0.2})

    async def fetch(**kw: float) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            await download(client, url, tmp_path / "c.mp4", job_id="J1", **kw)

    started = time.monotonic()
    with pytest.raises(DownloadError, match=r"J1.*came too slowly"):
        asyncio.run(fetch(grace=1.0, min_rate=1000))
    assert time.monotonic() - started < 10
    started = time.monotonic()
    with pytest.raises(DownloadError, match=r"J1.*still downloading after 2 s"):
        asyncio.run(fetch(deadline=2.0, min_rate=0))
    assert time.monotonic() - started < 10
    assert not (tmp_path / "c.mp4").exists()
    assert not list(tmp_path.glob(".*.part"))


def test_a_gzip_encoded_clip_is_saved_decoded(write_spec, emulator: Emulator) -> None:
    spec = write_spec(ONE)
    emulator.configure(gzip_downloads=True)
    done = cli(spec, provider_env(emulator))
    assert done.returncode == 0, done.stderr
    entry = Lockfile.load(spec.with_suffix(".lock"), "one").scenes["s"]
    assert entry.state == "done" and entry.output is not None
    clip = spec.parent / entry.output.path
    assert clip.read_bytes()[4:8] == b"ftyp"  # an MP4, not gzip's 1f 8b


# -- what is accepted as the clip ---------------------------------------------------------------


def _big_png(path: Path) -> Path:
    from PIL import Image

    Image.new("RGB", (4000, 4000), (10, 20, 30)).save(path, format="PNG")
    return path


def _big_h264(path: Path) -> Path:
    from hailuo_emulator.synthetic import synthetic_clip

    synthetic_clip(path, width=2048, height=2048, seconds=0.2, seed=1)
    return path


def _long_h264(path: Path) -> Path:
    from hailuo_emulator.synthetic import synthetic_clip

    synthetic_clip(path, width=256, height=144, seconds=16.0, fps=5, seed=1)
    return path


def _tiny_h264(path: Path) -> Path:
    from hailuo_emulator.synthetic import synthetic_clip

    synthetic_clip(path, width=16, height=16, seconds=6.0, fps=5, seed=1)
    return path


def _short_h264(path: Path) -> Path:
    from hailuo_emulator.synthetic import synthetic_clip

    synthetic_clip(path, width=256, height=144, seconds=0.4, fps=5, seed=1)
    return path


def _raw_video(path: Path) -> Path:
    import av

    with av.open(str(path), "w", format="avi") as out:
        stream = out.add_stream("rawvideo", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        frame = av.VideoFrame(320, 240, "yuv420p")
        for _ in range(3):
            for packet in stream.encode(frame):
                out.mux(packet)
    return path


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (_big_png, "png data"),
        (_big_h264, "2048x2048, far larger than 768p"),
        (_long_h264, "far longer than the 6 s"),
        (_tiny_h264, "16x16, far smaller than 768p"),
        (_short_h264, "far shorter than the 6 s"),
        (_raw_video, "rawvideo data"),
        (lambda p: (p.write_bytes(b"<html>not a clip</html>" * 100), p)[1], "cannot be read"),
    ],
)
def test_a_download_that_is_not_the_clip_asked_for_is_refused(
    tmp_path: Path, write_spec, emulator: Emulator, make, why: str
) -> None:
    bad = make(tmp_path / "bad.bin")
    spec = write_spec(ONE)
    emulator.configure(clip_path=str(bad))
    done = cli(spec, provider_env(emulator))
    assert done.returncode == 1, done.stderr
    assert why in done.stderr and "was refused" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not list(spec.parent.rglob("*.mp4"))
    _fetched_again_for_free(spec, emulator)


def test_a_provider_message_cannot_drive_the_terminal() -> None:
    """A provider's words reach errors, the lockfile and the CLI with controls escaped."""
    import asyncio

    import httpx

    from hailuo_pipe.errors import RequestRejected
    from hailuo_pipe.providers.http import request

    hostile = "bad\x1b]0;pwned\x07\x1b[2J\r\nfake line \u202e"

    async def go() -> None:
        body = {"message": hostile}
        transport = httpx.MockTransport(lambda r: httpx.Response(400, json=body))
        async with httpx.AsyncClient(transport=transport) as client:
            await request(client, "GET", "http://x/", idempotent=True, provider="p")

    with pytest.raises(RequestRejected) as caught:
        asyncio.run(go())
    text = str(caught.value)
    assert "\\x1b]0;pwned\\x07" in text
    assert not any(ch in text for ch in "\x1b\x07\r\n\u202e")
