"""The HTML report: cards, thumbnails, escaping, placeholders, and a real browser loading it."""

from __future__ import annotations

import html
import os
import re
import struct
import time
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image
from support import browser

from hailuo_emulator.synthetic import synthetic_clip
from hailuo_pipe import media
from hailuo_pipe.plan import Plan, Step
from hailuo_pipe.report import write_report
from hailuo_pipe.state.lockfile import Entry, FileRecord, Lockfile
from hailuo_pipe.storyboard.images import sha256_file
from hailuo_pipe.storyboard.model import Cut, FrameRef, ImageInput, Scene, Storyboard

EVIL = 'Night falls </p><script>alert("x")</script> & <b>bold</b>'
SECRET = "sk-live-report-must-not-leak-0123456789"


def _scene(id_: str, prompt: str, image: ImageInput | None, duration: int = 6) -> Scene:
    return Scene(
        id=id_,
        prompt=prompt,
        provider="preview",
        duration=duration,
        resolution="512p",
        prompt_optimizer=False,
        image=image,
    )


def _record(base: Path, path: Path) -> FileRecord:
    return FileRecord(path.relative_to(base).as_posix(), sha256_file(path), path.stat().st_size)


def _done(base: Path, board: Storyboard, scene_id: str, seed: int, cost: float) -> Entry:
    """A finished scene with a real H.264 clip and its real first and last frame PNGs."""
    out = board.render_dir
    clip = out / f"{scene_id}.mp4"
    synthetic_clip(clip, width=320, height=180, seconds=1, seed=seed)
    pngs = {which: out / "frames" / f"{scene_id}-{which}.png" for which in ("first", "last")}
    media.extract_frames(clip, pngs)
    frames = {which: _record(base, png) for which, png in pngs.items()}
    return Entry(
        fingerprint=f"sha256:{seed:064x}",
        provider="preview",
        state="done",
        key=f"key-{scene_id}",
        request={},
        job_id=f"job-{scene_id}-{seed}",
        output=_record(base, clip),
        frames=frames,
        cost=cost,
    )


def _step(scene: Scene, action: str, reason: str, price: str, entry: Entry | None) -> Step:
    return Step(scene, action, reason, Decimal(price), None, None, entry)  # type: ignore[arg-type]


@pytest.fixture
def project(tmp_path: Path) -> tuple[Storyboard, Lockfile, Plan]:
    """dawn and escape rendered (escape starts from dawn's last frame); arrival and lone not:
    arrival is still to create, lone's job failed with an error that echoes an API key."""
    base = tmp_path / "project"
    (base / "assets").mkdir(parents=True)
    Image.new("RGB", (640, 360), (90, 120, 160)).save(base / "assets" / "a.png")
    scenes = (
        _scene(
            "dawn", "Aerial dive over Ice Harbor at dawn", ImageInput(path=base / "assets/a.png")
        ),
        _scene("escape", "Tugboats surge", ImageInput(ref=FrameRef("dawn", "last"))),
        _scene("arrival", EVIL, ImageInput(ref=FrameRef("escape", "last")), duration=10),
        _scene("lone", "Unrelated", ImageInput(path=base / "assets/a.png")),
    )
    board = Storyboard(
        path=base / "story.yaml",
        name="story",
        scenes=scenes,
        output=Cut("renders/story.mp4", ("dawn", "escape")),
    )
    lock = Lockfile(board.lock_path, "story")
    lock.scenes["dawn"] = _done(base, board, "dawn", 1, 0.27)
    lock.scenes["escape"] = _done(base, board, "escape", 2, 0.28)
    lock.scenes["lone"] = Entry(
        fingerprint="sha256:" + "f" * 64,
        provider="preview",
        state="failed",
        key="key-lone",
        request={},
        job_id="job-lone",
        cost=0.1,
        error=f"401 Unauthorized: invalid key {SECRET} for {base / 'assets/a.png'}",
    )
    cut = base / "renders" / "story.mp4"
    synthetic_clip(cut, width=320, height=180, seconds=1, seed=9)
    lock.cut = _record(base, cut)
    steps = (
        _step(scenes[0], "reuse", "up to date", "0", lock.scenes["dawn"]),
        _step(scenes[1], "reuse", "up to date", "0", lock.scenes["escape"]),
        _step(scenes[2], "create", "not rendered yet", "0.56", None),
        _step(scenes[3], "retry", "last job failed: 401", "0.28", lock.scenes["lone"]),
    )
    return board, lock, Plan(steps)


def _cards(page: str) -> dict[str, str]:
    """Each card's HTML by scene id."""
    parts = re.split(r'(?=<article class="card)', page)
    out = {}
    for part in parts[1:]:
        match = re.search(r'data-scene="([^"]+)"', part)
        assert match
        out[match.group(1)] = part.split("</article>")[0]
    return out


def _srcs(fragment: str) -> list[str]:
    return [html.unescape(s) for s in re.findall(r'(?:src|poster)="([^"]+)"', fragment)]


def test_report_cards_thumbnails_and_totals(project, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("WAVESPEED_API_KEY", SECRET)
    board, lock, plan = project
    page_path = write_report(board, lock, plan)
    assert page_path == board.render_dir / "report.html"
    assert page_path.stat().st_mode & 0o777 == 0o644  # readable by whoever serves the renders
    page = page_path.read_text(encoding="utf-8")
    cards = _cards(page)
    assert list(cards) == ["dawn", "escape", "arrival", "lone"]  # storyboard order

    # header totals: 4 scenes, 28 s, $0.65 spent, $0.84 for the next render, the cut plays
    assert 'id="spent">$0.65<' in page
    assert 'id="to-spend">$0.84<' in page
    assert "28 s" in page
    assert 'src="../story.mp4"' in page

    dawn = cards["dawn"]
    assert 'src="dawn.mp4"' in dawn and 'preload="metadata"' in dawn
    assert "job-dawn-1" in dawn and "$0.27" in dawn and "up to date" in dawn
    assert "512p" in dawn and "6 s" in dawn and "preview" in dawn
    assert 'href="#scene-escape"' in dawn  # dawn's last frame feeds escape
    assert 'href="#scene-dawn"' in cards["escape"]
    assert "last frame of dawn" in cards["escape"]

    # every linked file is relative, exists, and thumbnails are small JPEGs
    out = page_path.parent
    for src in _srcs(page):
        assert not src.startswith(("/", "file:", "http")), src
        assert (out / src).is_file(), src
    thumbs = sorted((out / "thumbs").iterdir())
    assert {t.name for t in thumbs} == {
        "dawn-first.jpg",
        "dawn-last.jpg",
        "lone-input.jpg",
        "cut.jpg",
        "escape-first.jpg",
        "escape-last.jpg",
    }
    for thumb in thumbs:
        assert thumb.read_bytes()[:3] == b"\xff\xd8\xff"
        assert thumb.stat().st_size < 60_000
        with Image.open(thumb) as im:
            assert im.format == "JPEG" and im.width == (640 if thumb.name == "cut.jpg" else 320)

    # nothing of the machine leaks: no absolute path, no key from the environment
    assert str(board.path.parent) not in page
    assert SECRET not in page
    assert "invalid key *** for assets/a.png" in cards["lone"]
    assert "<link" not in page and "http://" not in page.replace("http://www.w3.org", "")


def test_report_escapes_prompts(project) -> None:  # type: ignore[no-untyped-def]
    board, lock, plan = project
    page = write_report(board, lock, plan).read_text(encoding="utf-8")
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert "<b>bold</b>" not in page


def test_report_placeholders_for_unrendered_scenes(project) -> None:  # type: ignore[no-untyped-def]
    board, lock, plan = project
    cards = _cards(write_report(board, lock, plan).read_text(encoding="utf-8"))
    arrival = cards["arrival"]
    assert "placeholder" in arrival and "<video" not in arrival
    assert "not rendered" in arrival and "create · $0.56" in arrival
    assert "last frame of escape" in arrival
    lone = cards["lone"]
    assert "placeholder" in lone and "failed" in lone and "retry · $0.28" in lone
    assert 'src="thumbs/lone-input.jpg"' in lone  # what it starts from, behind the placeholder
    assert "placeholder" not in cards["dawn"]


def test_image_urls_are_shown_never_fetched(project) -> None:  # type: ignore[no-untyped-def]
    board, lock, plan = project
    url = "https://example.com/still.png?a=1&b=2"
    scenes = (*board.scenes[:3], replace(board.scenes[3], image=ImageInput(url=url)))
    page = write_report(replace(board, scenes=scenes), lock, plan).read_text(encoding="utf-8")
    assert "https://example.com/still.png?a=1&amp;b=2" in _cards(page)["lone"]
    assert 'src="https://' not in page


def test_thumbnails_are_made_again_only_when_stale(project, tmp_path) -> None:  # type: ignore[no-untyped-def]
    board, lock, plan = project
    out = tmp_path / "elsewhere"
    page = write_report(board, lock, plan, out)
    assert page == out / "report.html"
    thumb = out / "thumbs" / "dawn-last.jpg"
    source = board.path.parent / lock.scenes["dawn"].frames["last"].path
    past = time.time() - 100
    os.utime(thumb, (past, past))
    os.utime(source, (past - 100, past - 100))
    write_report(board, lock, plan, out)
    assert thumb.stat().st_mtime == pytest.approx(past)  # up to date: left alone
    os.utime(source, None)  # the frame changed after the thumbnail was made
    write_report(board, lock, plan, out)
    assert thumb.stat().st_mtime > past + 50
    # links from a folder outside the render dir still reach the clips
    assert 'src="../project/renders/story/dawn.mp4"' in page.read_text(encoding="utf-8")


def test_missing_clip_and_frame_do_not_break_the_report(project) -> None:  # type: ignore[no-untyped-def]
    board, lock, plan = project
    base = board.path.parent
    (base / lock.scenes["escape"].output.path).unlink()
    (base / lock.scenes["escape"].frames["first"].path).unlink()
    cards = _cards(write_report(board, lock, plan).read_text(encoding="utf-8"))
    assert "clip missing here" in cards["escape"] and "<video" not in cards["escape"]
    assert "escape-last.jpg" in cards["escape"] and "escape-first.jpg" not in cards["escape"]


# -- the real thing: a browser ---------------------------------------------------------------------


@pytest.fixture
def chromium() -> str:
    found = browser.find_chromium()
    if found is None:
        pytest.skip("no chromium on PATH: run scripts/install-chromium.sh (needs apt-get)")
    return found


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _check_in_browser(chromium: str, page: Path) -> dict:  # type: ignore[type-arg]
    found = browser.check_page(chromium, page)
    # Debian's chromium decodes H.264 (it links the system FFmpeg with every codec); a build
    # that cannot would say so here and fail below with the reason, not with a blank page.
    assert found["canPlayH264"] == "probably", found
    for img in found["images"]:
        assert img["complete"] and img["naturalWidth"] > 0, img
    for video in found["videos"]:
        assert video["error"] is None, video
        assert video["readyState"] >= 1, video  # HAVE_METADATA: the clip was opened and parsed
        assert video["videoWidth"] > 0 and video["duration"] > 0, video
    return found


@pytest.mark.browser
def test_report_loads_in_chromium(project, chromium, tmp_path) -> None:  # type: ignore[no-untyped-def]
    board, lock, plan = project
    page = write_report(board, lock, plan)
    found = _check_in_browser(chromium, page)
    assert found["cards"] == ["dawn", "escape", "arrival", "lone"]
    assert found["placeholders"] == 2
    assert len(found["images"]) == 5  # first and last of dawn and escape, lone's input
    assert len(found["videos"]) == 3  # the cut, dawn, escape
    shot = browser.screenshot(chromium, page, tmp_path / "report.png")
    assert _png_size(shot) == (1280, 1600)


def _preview_available() -> bool:
    try:
        from hailuo_pipe import providers

        providers.get("preview")
    except (ImportError, AttributeError):
        return False
    return True


CHAIN = """
version: 1
name: chain
defaults:
  provider: preview
  resolution: 512p
scenes:
  - id: a
    prompt: "Harbor at dawn <script>alert(1)</script>"
    image: assets/a.png
  - id: b
    prompt: second
    image: {from: a, frame: last}
  - id: c
    prompt: third
    image: {from: b, frame: last}
    end_image: assets/b.jpg
output:
  path: renders/chain.mp4
  sequence: [a, b, c]
"""


@pytest.fixture
def preview_render(write_spec: Callable[[str], Path]) -> tuple[Path, Lockfile]:
    """The report of a storyboard really rendered, offline, by the preview provider."""
    from hailuo_pipe.plan import make_plan
    from hailuo_pipe.render import RenderOptions, render
    from hailuo_pipe.validate import load_storyboard

    board = load_storyboard(write_spec(CHAIN))
    before = write_report(board, Lockfile.load(board.lock_path, "chain"), _plan(board))
    assert before.read_text(encoding="utf-8").count('class="placeholder"') == 4  # + the cut
    render(board, RenderOptions())
    lock = Lockfile.load(board.lock_path, "chain")
    return write_report(board, lock, make_plan(board, lock)), lock


needs_preview = pytest.mark.skipif(
    not _preview_available(), reason="the preview provider is not built yet"
)


@needs_preview
def test_report_of_a_preview_render(preview_render: tuple[Path, Lockfile]) -> None:
    page, lock = preview_render
    text = page.read_text(encoding="utf-8")
    assert list(_cards(text)) == ["a", "b", "c"]
    assert "&lt;script&gt;" in text and "<script" not in text
    assert 'class="placeholder"' not in text
    assert lock.cut is not None  # a render assembles the declared cut
    assert text.count("<video ") == 4
    for src in _srcs(text):
        assert (page.parent / src).is_file(), src


@needs_preview
@pytest.mark.browser
def test_report_of_a_preview_render_in_chromium(
    preview_render: tuple[Path, Lockfile], chromium: str
) -> None:
    page, _ = preview_render
    found = _check_in_browser(chromium, page)
    assert found["cards"] == ["a", "b", "c"]
    assert len(found["videos"]) == 4  # a, b, c and the cut
    assert len(found["images"]) == 6  # first and last frame of each


def _plan(board: Storyboard) -> Plan:
    from hailuo_pipe.plan import make_plan

    return make_plan(board, Lockfile.load(board.lock_path, board.name))
