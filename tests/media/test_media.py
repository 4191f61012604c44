"""media.py against real files: real H.264 encodes and decodes with PyAV, no mocks."""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from pathlib import Path

import av
import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

from hailuo_pipe import media
from hailuo_pipe.errors import MediaError

# x264's own defaults (B-frames, CABAC), with one keyframe like a Hailuo clip.
ONE_KEYFRAME = {"g": "1000", "x264-params": "scenecut=0"}


def decode_all(path: Path) -> list[Image.Image]:
    with av.open(str(path)) as container:
        return [frame.to_image() for frame in container.decode(video=0)]


def picture_types(path: Path) -> Counter[str]:
    names = {1: "I", 2: "P", 3: "B"}  # AVPictureType
    with av.open(str(path)) as container:
        return Counter(names.get(int(f.pict_type), "?") for f in container.decode(video=0))


def pixels(path: Path) -> tuple[str, tuple[int, int], bytes]:
    with Image.open(path) as image:
        return image.mode, image.size, image.tobytes()


def difference(a: Image.Image, b: Image.Image, keep: float = 0.65) -> float:
    """Mean absolute difference per channel over the top part (above the caption band)."""
    box = (0, 0, a.width, int(a.height * keep))
    diff = ImageChops.difference(a.convert("RGB").crop(box), b.convert("RGB").crop(box))
    return sum(ImageStat.Stat(diff).mean) / 3


@pytest.fixture(scope="module")
def bframe_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clips") / "bframes.mp4"
    media.synthetic_clip(path, width=320, height=180, seconds=3, seed=7, x264=ONE_KEYFRAME)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("images")
    red = Image.new("RGB", (640, 360), (200, 50, 40))
    ImageDraw.Draw(red).ellipse((100, 60, 300, 260), fill=(30, 200, 90))
    blue = Image.new("RGB", (640, 360), (30, 60, 210))
    ImageDraw.Draw(blue).rectangle((350, 40, 600, 220), fill=(250, 240, 20))
    red.save(folder / "first.png")
    blue.save(folder / "last.jpg", quality=92)
    return folder / "first.png", folder / "last.jpg"


# -- probe -----------------------------------------------------------------------------------


def test_probe_reports_the_clip(bframe_clip: Path) -> None:
    info = media.probe(bframe_clip)
    assert info == media.ClipInfo(
        codec="h264",
        width=320,
        height=180,
        fps=Fraction(25),
        frames=75,
        duration=3.0,
        pix_fmt="yuv420p",
    )


def test_fixture_clip_has_b_frames_and_one_keyframe(bframe_clip: Path) -> None:
    types = picture_types(bframe_clip)
    with av.open(str(bframe_clip)) as container:
        assert sum(f.key_frame for f in container.decode(video=0)) == 1
    assert types["I"] == 1
    assert types["B"] > 10


# -- frame extraction ------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["first", "last"])
def test_extracted_frame_is_bit_exact(bframe_clip: Path, tmp_path: Path, which: str) -> None:
    frames = decode_all(bframe_clip)
    expected = frames[0] if which == "first" else frames[-1]
    dest = tmp_path / "frame.png"
    media.extract_frame(bframe_clip, which, dest)  # type: ignore[arg-type]
    assert pixels(dest) == ("RGB", (320, 180), expected.tobytes())
    with Image.open(dest) as image:
        assert image.format == "PNG"


@pytest.mark.parametrize("seconds", [0.04, 0.32, 1.0, 2.2])
def test_last_frame_exact_for_any_length(tmp_path: Path, seconds: float) -> None:
    clip = tmp_path / "clip.mp4"
    media.synthetic_clip(clip, width=160, height=96, seconds=seconds, seed=3, x264=ONE_KEYFRAME)
    media.extract_frame(clip, "last", tmp_path / "last.png")
    assert pixels(tmp_path / "last.png")[2] == decode_all(clip)[-1].tobytes()


@pytest.mark.parametrize("options", [{"g": "12"}, {"g": "12", "x264-params": "open-gop=1"}])
def test_last_frame_exact_with_many_keyframes(tmp_path: Path, options: dict[str, str]) -> None:
    clip = tmp_path / "gops.mp4"
    media.synthetic_clip(clip, width=160, height=96, seconds=2, seed=5, x264=options)
    media.extract_frame(clip, "last", tmp_path / "last.png")
    assert pixels(tmp_path / "last.png")[2] == decode_all(clip)[-1].tobytes()


def test_last_frame_decoding_starts_at_the_last_idr(tmp_path: Path) -> None:
    clip = tmp_path / "gops.mp4"
    media.synthetic_clip(clip, width=160, height=96, seconds=2, seed=5, x264={"g": "12"})
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        packets = media._packets(container, stream)
        start = media._last_idr(packets, stream, before=len(packets) - 1)
    keyframes = [i for i, p in enumerate(packets) if p.is_keyframe]
    assert len(keyframes) > 3
    assert start == keyframes[-1]


@pytest.mark.parametrize("options", [None, {"g": "12"}])
def test_both_frames_at_once_are_exact_from_one_pass_when_it_can(
    bframe_clip: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    options: dict[str, str] | None,
) -> None:
    clip = bframe_clip
    if options:  # several keyframes: the last frame's pass starts late, so first needs its own
        clip = tmp_path / "gops.mp4"
        media.synthetic_clip(clip, width=160, height=96, seconds=2, seed=5, x264=options)
    opened = []
    real_open = media._open_video
    monkeypatch.setattr(media, "_open_video", lambda path: opened.append(path) or real_open(path))
    dests = {"first": tmp_path / "first.png", "last": tmp_path / "last.png"}
    media.extract_frames(clip, dests)
    frames = decode_all(clip)
    assert pixels(dests["first"])[2] == frames[0].tobytes()
    assert pixels(dests["last"])[2] == frames[-1].tobytes()
    assert len(opened) == (2 if options else 1)


def test_extraction_replaces_an_existing_file(bframe_clip: Path, tmp_path: Path) -> None:
    dest = tmp_path / "frame.png"
    dest.write_text("stale")
    media.extract_frame(bframe_clip, "last", dest)
    assert pixels(dest)[0] == "RGB"
    assert [p.name for p in tmp_path.iterdir()] == ["frame.png"]


# -- animatics -------------------------------------------------------------------------------


def test_animatic_dissolves_from_first_to_last_image(
    images: tuple[Path, Path], tmp_path: Path
) -> None:
    first, last = images
    clip = tmp_path / "preview.mp4"
    media.render_animatic(
        clip, width=320, height=180, seconds=6, first=first, last=last, caption="A harbor at dawn"
    )
    info = media.probe(clip)
    assert (info.codec, info.width, info.height, info.fps, info.pix_fmt) == (
        "h264",
        320,
        180,
        Fraction(25),
        "yuv420p",
    )
    assert info.frames == 150
    assert info.duration == pytest.approx(6.0)
    frames = decode_all(clip)
    start, end = (Image.open(p).resize((320, 180)) for p in images)
    assert difference(frames[0], start) < 6 < difference(frames[0], end)
    assert difference(frames[-1], end) < 6 < difference(frames[-1], start)
    middle = frames[75]
    assert difference(middle, start) > 20 and difference(middle, end) > 20


def test_animatic_frames_extract_exactly(images: tuple[Path, Path], tmp_path: Path) -> None:
    clip = tmp_path / "preview.mp4"
    media.render_animatic(
        clip, width=320, height=180, seconds=6, first=images[0], last=images[1], caption="x"
    )
    frames = decode_all(clip)
    media.extract_frame(clip, "first", tmp_path / "first.png")
    media.extract_frame(clip, "last", tmp_path / "last.png")
    assert pixels(tmp_path / "first.png")[2] == frames[0].tobytes()
    assert pixels(tmp_path / "last.png")[2] == frames[-1].tobytes()


def test_animatic_pushes_in_without_a_last_image(images: tuple[Path, Path], tmp_path: Path) -> None:
    clip = tmp_path / "push.mp4"
    media.render_animatic(
        clip, width=320, height=180, seconds=6, first=images[0], last=None, caption="Push in"
    )
    frames = decode_all(clip)
    assert len(frames) == 150
    start = Image.open(images[0]).resize((320, 180))
    assert difference(frames[0], start) < 6
    assert difference(frames[-1], frames[0]) > 3  # it moved: zoomed in


def test_animatic_caption_is_drawn(images: tuple[Path, Path], tmp_path: Path) -> None:
    def bottom(caption: str) -> Image.Image:
        clip = tmp_path / f"{len(caption)}.mp4"
        media.render_animatic(
            clip, width=320, height=180, seconds=6, first=images[0], last=None, caption=caption
        )
        return decode_all(clip)[0].crop((0, 150, 320, 180))

    plain, captioned = bottom(""), bottom("Aerial dive over Ice Harbor at dawn " * 4)
    assert sum(ImageStat.Stat(ImageChops.difference(plain, captioned)).mean) / 3 > 20


def test_animatic_without_images_is_a_dark_card(tmp_path: Path) -> None:
    clip = tmp_path / "card.mp4"
    media.render_animatic(
        clip, width=320, height=180, seconds=6, first=None, last=None, caption="Nothing given"
    )
    frames = decode_all(clip)
    assert len(frames) == 150
    assert max(ImageStat.Stat(frames[0].crop((0, 0, 320, 100))).mean) < 40


def test_animatic_shows_a_url_instead_of_fetching_it(tmp_path: Path) -> None:
    clip = tmp_path / "url.mp4"
    media.render_animatic(
        clip,
        width=320,
        height=180,
        seconds=6,
        first="https://unreachable.invalid/harbor.jpg",
        last=None,
        caption="",
    )
    first = decode_all(clip)[0]
    dark = tmp_path / "dark.mp4"
    media.render_animatic(dark, width=320, height=180, seconds=6, first=None, last=None, caption="")
    assert difference(first, decode_all(dark)[0], keep=1.0) > 3


def test_animatic_rejects_a_bad_image(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(MediaError, match=r"bad\.png"):
        media.render_animatic(
            tmp_path / "x.mp4", width=320, height=180, seconds=6, first=bad, last=None, caption=""
        )
    assert not (tmp_path / "x.mp4").exists()


def test_animatic_needs_even_dimensions(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even"):
        media.render_animatic(
            tmp_path / "x.mp4", width=321, height=180, seconds=6, first=None, last=None, caption=""
        )


# -- stitching -------------------------------------------------------------------------------


def test_stitch_copies_alike_clips_exactly(bframe_clip: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.mp4"
    media.synthetic_clip(other, width=320, height=180, seconds=1.2, seed=8, x264=ONE_KEYFRAME)
    out = tmp_path / "cut.mp4"
    assert media.stitch([bframe_clip, other, bframe_clip], out) == "copy"
    info = media.probe(out)
    assert info.frames == 75 + 30 + 75
    assert info.duration == pytest.approx(7.2)
    a, b = decode_all(bframe_clip), decode_all(other)
    assert [f.tobytes() for f in decode_all(out)] == [f.tobytes() for f in a + b + a]


def test_stitch_reencodes_other_sizes_to_the_first(bframe_clip: Path, tmp_path: Path) -> None:
    bigger = tmp_path / "bigger.mp4"
    media.synthetic_clip(bigger, width=480, height=270, seconds=1, seed=2)
    square = tmp_path / "square.mp4"
    media.synthetic_clip(square, width=200, height=200, seconds=0.4, seed=4)
    out = tmp_path / "cut.mp4"
    assert media.stitch([bframe_clip, bigger, square], out) == "reencode"
    info = media.probe(out)
    assert (info.width, info.height, info.fps, info.codec) == (320, 180, Fraction(25), "h264")
    assert info.frames == 75 + 25 + 10
    assert info.duration == pytest.approx(4.4)


def test_stitch_keeps_durations_across_frame_rates(tmp_path: Path) -> None:
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    media.synthetic_clip(a, width=160, height=96, seconds=1, fps=25)
    media.synthetic_clip(b, width=160, height=96, seconds=1, fps=30)
    out = tmp_path / "cut.mp4"
    assert media.stitch([a, b], out) == "reencode"
    info = media.probe(out)
    assert (info.frames, info.fps) == (50, Fraction(25))
    assert info.duration == pytest.approx(2.0)


def test_stitch_reencodes_clips_from_differently_configured_encoders(tmp_path: Path) -> None:
    # Same size and rate, but CAVLC (ultrafast) vs CABAC (x264 defaults): their parameter sets
    # differ, so copying packets into one MP4 track would not decode.
    fast, slow = tmp_path / "fast.mp4", tmp_path / "slow.mp4"
    media.synthetic_clip(fast, width=160, height=96, seconds=1)
    media.synthetic_clip(slow, width=160, height=96, seconds=1, x264=ONE_KEYFRAME)
    out = tmp_path / "cut.mp4"
    assert media.stitch([fast, slow], out) == "reencode"
    assert media.probe(out).frames == 50
    assert len(decode_all(out)) == 50


def test_stitch_of_nothing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError):
        media.stitch([], tmp_path / "cut.mp4")


# -- thumbnails ------------------------------------------------------------------------------


def test_thumbnail_of_an_image(images: tuple[Path, Path], tmp_path: Path) -> None:
    dest = tmp_path / "thumb.jpg"
    media.thumbnail(images[0], dest)
    with Image.open(dest) as image:
        assert (image.format, image.size) == ("JPEG", (320, 180))
    assert 1_000 < dest.stat().st_size < 60_000


def test_thumbnail_of_a_video_is_its_first_frame(bframe_clip: Path, tmp_path: Path) -> None:
    dest = tmp_path / "thumb.jpg"
    media.thumbnail(bframe_clip, dest, width=160)
    with Image.open(dest) as image:
        assert (image.format, image.size) == ("JPEG", (160, 90))
        first = decode_all(bframe_clip)[0].resize((160, 90))
        assert difference(image, first, keep=1.0) < 8


# -- synthetic clips -------------------------------------------------------------------------


def test_synthetic_clip_pads_to_a_size_and_stays_valid(tmp_path: Path) -> None:
    clip = tmp_path / "big.mp4"
    media.synthetic_clip(clip, width=160, height=96, seconds=1, seed=1, min_bytes=2_000_000)
    assert clip.stat().st_size >= 2_000_000
    assert media.probe(clip).frames == 25
    assert len(decode_all(clip)) == 25


def test_synthetic_clips_differ_by_seed(tmp_path: Path) -> None:
    for seed in (1, 2):
        media.synthetic_clip(tmp_path / f"{seed}.mp4", width=160, height=96, seconds=0.2, seed=seed)
    one, two = (decode_all(tmp_path / f"{seed}.mp4")[0] for seed in (1, 2))
    assert difference(one, two, keep=1.0) > 10


# -- bad input -------------------------------------------------------------------------------


@pytest.fixture
def not_a_video(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_text("this is not a video\n" * 20)
    return path


def test_probe_of_a_text_file_is_a_media_error(not_a_video: Path) -> None:
    with pytest.raises(MediaError, match=r"clip\.mp4"):
        media.probe(not_a_video)


def test_probe_of_a_missing_file_is_a_media_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="not found"):
        media.probe(tmp_path / "missing.mp4")


@pytest.mark.parametrize("which", ["first", "last"])
def test_extract_from_bad_files_is_a_media_error(
    not_a_video: Path, tmp_path: Path, which: str
) -> None:
    dest = tmp_path / "out" / "frame.png"
    for source in (not_a_video, tmp_path / "missing.mp4"):
        with pytest.raises(MediaError):
            media.extract_frame(source, which, dest)  # type: ignore[arg-type]
    assert not dest.exists()


def test_extract_from_a_truncated_clip_is_a_media_error(bframe_clip: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bframe_clip.read_bytes()[:2000])
    with pytest.raises(MediaError):
        media.extract_frame(broken, "last", tmp_path / "frame.png")


def test_stitch_and_thumbnail_of_bad_files_are_media_errors(
    not_a_video: Path, bframe_clip: Path, tmp_path: Path
) -> None:
    with pytest.raises(MediaError):
        media.stitch([bframe_clip, not_a_video], tmp_path / "cut.mp4")
    with pytest.raises(MediaError):
        media.thumbnail(not_a_video, tmp_path / "thumb.jpg")
    with pytest.raises(MediaError):
        media.thumbnail(tmp_path / "missing.png", tmp_path / "thumb.jpg")
    assert not (tmp_path / "cut.mp4").exists()
    assert not (tmp_path / "thumb.jpg").exists()
