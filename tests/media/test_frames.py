"""media/frames.py against real files: exact first and last frames, PNGs and thumbnails."""

from __future__ import annotations

from pathlib import Path

import av
import pytest
from PIL import Image
from support.video import ONE_KEYFRAME, decode_all, difference, pixels

from hailuo_emulator.synthetic import synthetic_clip
from hailuo_pipe import media
from hailuo_pipe.errors import MediaError
from hailuo_pipe.media import frames


@pytest.mark.parametrize("which", ["first", "last"])
def test_extracted_frame_is_bit_exact(bframe_clip: Path, tmp_path: Path, which: str) -> None:
    decoded = decode_all(bframe_clip)
    expected = decoded[0] if which == "first" else decoded[-1]
    dest = tmp_path / "frame.png"
    media.extract_frames(bframe_clip, {which: dest})
    assert pixels(dest) == ("RGB", (320, 180), expected.tobytes())
    with Image.open(dest) as image:
        assert image.format == "PNG"


def test_a_frame_of_a_colour_tagged_clip_is_written_untagged(tmp_path: Path) -> None:
    """A BT.709-tagged clip (as providers deliver) gives a PNG of its pixels with no colour
    chunk (cICP, cHRM, gAMA, iCCP, sRGB): a viewer shows an untagged PNG as the pixels are,
    a tagged one converted. Square pixels are said as such (pHYs 1:1, no unit)."""
    import struct

    clip = tmp_path / "tagged.mp4"
    bt709 = "colorprim=bt709:transfer=bt709:colormatrix=bt709"
    synthetic_clip(clip, width=320, height=180, seconds=0.4, x264={"x264-params": bt709})
    with av.open(str(clip)) as container:
        decoded = next(container.decode(video=0))
        assert decoded.colorspace == 1  # BT.709: the clip is tagged
    dest = tmp_path / "last.png"
    media.extract_frames(clip, {"last": dest})
    data = dest.read_bytes()
    chunks, at = [], 8
    while at < len(data):
        (size,) = struct.unpack(">I", data[at : at + 4])
        chunks.append((data[at + 4 : at + 8].decode(), data[at + 8 : at + 8 + size]))
        at += 12 + size
    assert sorted({name for name, _ in chunks}) == ["IDAT", "IEND", "IHDR", "pHYs"]
    assert dict(chunks)["pHYs"] == struct.pack(">IIB", 1, 1, 0)
    assert pixels(dest) == ("RGB", (320, 180), decode_all(clip)[-1].tobytes())


def test_extraction_returns_the_pixel_digest_of_what_it_wrote(
    bframe_clip: Path, tmp_path: Path
) -> None:
    dests = {"first": tmp_path / "first.png", "last": tmp_path / "last.png"}
    digests = media.extract_frames(bframe_clip, dests)
    assert digests == {which: media.png_pixels(dest) for which, dest in dests.items()}
    assert digests["first"] != digests["last"]


@pytest.mark.parametrize("seconds", [0.04, 0.32, 1.0, 2.2])
def test_last_frame_exact_for_any_length(tmp_path: Path, seconds: float) -> None:
    clip = tmp_path / "clip.mp4"
    synthetic_clip(clip, width=160, height=96, seconds=seconds, seed=3, x264=ONE_KEYFRAME)
    media.extract_frames(clip, {"last": tmp_path / "last.png"})
    assert pixels(tmp_path / "last.png")[2] == decode_all(clip)[-1].tobytes()


@pytest.mark.parametrize("options", [{"g": "12"}, {"g": "12", "x264-params": "open-gop=1"}])
def test_last_frame_exact_with_many_keyframes(tmp_path: Path, options: dict[str, str]) -> None:
    clip = tmp_path / "gops.mp4"
    synthetic_clip(clip, width=160, height=96, seconds=2, seed=5, x264=options)
    media.extract_frames(clip, {"last": tmp_path / "last.png"})
    assert pixels(tmp_path / "last.png")[2] == decode_all(clip)[-1].tobytes()


def test_last_frame_decoding_starts_at_the_last_idr(tmp_path: Path) -> None:
    clip = tmp_path / "gops.mp4"
    synthetic_clip(clip, width=160, height=96, seconds=2, seed=5, x264={"g": "12"})
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        packets = media.av.shown_packets(container, stream)
        start = frames._last_idr(packets, stream, before=len(packets) - 1)
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
        synthetic_clip(clip, width=160, height=96, seconds=2, seed=5, x264=options)
    opened = []
    real_open = frames.open_video
    monkeypatch.setattr(frames, "open_video", lambda path: opened.append(path) or real_open(path))
    dests = {"first": tmp_path / "first.png", "last": tmp_path / "last.png"}
    media.extract_frames(clip, dests)
    decoded = decode_all(clip)
    assert pixels(dests["first"])[2] == decoded[0].tobytes()
    assert pixels(dests["last"])[2] == decoded[-1].tobytes()
    assert len(opened) == (2 if options else 1)


def test_extraction_replaces_an_existing_file(bframe_clip: Path, tmp_path: Path) -> None:
    dest = tmp_path / "frame.png"
    dest.write_text("stale")
    media.extract_frames(bframe_clip, {"last": dest})
    assert pixels(dest)[0] == "RGB"
    assert [p.name for p in tmp_path.iterdir()] == ["frame.png"]


@pytest.mark.parametrize("which", ["first", "last"])
def test_extract_from_bad_files_is_a_media_error(
    not_a_video: Path, tmp_path: Path, which: str
) -> None:
    dest = tmp_path / "out" / "frame.png"
    for source in (not_a_video, tmp_path / "missing.mp4"):
        with pytest.raises(MediaError):
            media.extract_frames(source, {which: dest})
    assert not dest.exists()


def test_extract_from_a_truncated_clip_is_a_media_error(bframe_clip: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bframe_clip.read_bytes()[:2000])
    with pytest.raises(MediaError):
        media.extract_frames(broken, {"last": tmp_path / "frame.png"})


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


def test_thumbnail_of_bad_files_is_a_media_error(not_a_video: Path, tmp_path: Path) -> None:
    with pytest.raises(MediaError):
        media.thumbnail(not_a_video, tmp_path / "thumb.jpg")
    with pytest.raises(MediaError):
        media.thumbnail(tmp_path / "missing.png", tmp_path / "thumb.jpg")
    assert not (tmp_path / "thumb.jpg").exists()
