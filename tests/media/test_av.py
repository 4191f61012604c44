"""media/av.py against real files: probing clips and checking a provider's clip."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import pytest
from support.video import picture_types

from hailuo_emulator.synthetic import synthetic_clip
from hailuo_pipe import media
from hailuo_pipe.errors import MediaError


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


def test_a_clip_of_the_shape_paid_for_passes_the_check(bframe_clip: Path) -> None:
    info = media.check_clip(bframe_clip, "512p", 3)
    assert (info.frames, info.width, info.height) == (75, 320, 180)


def test_a_clip_far_longer_than_paid_for_is_refused(bframe_clip: Path) -> None:
    with pytest.raises(MediaError, match="far longer than the 1 s paid for"):
        media.check_clip(bframe_clip, "512p", 1)


def test_a_clip_far_larger_than_its_resolution_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.mp4"
    synthetic_clip(big, width=640, height=360, seconds=0.2)
    with pytest.raises(MediaError, match="640x360, far larger than 128p"):
        media.check_clip(big, "128p", 6)


def test_a_clip_far_smaller_than_its_resolution_is_refused(tmp_path: Path) -> None:
    tiny = tmp_path / "tiny.mp4"
    synthetic_clip(tiny, width=32, height=18, seconds=6, fps=5)
    with pytest.raises(MediaError, match="32x18, far smaller than 768p"):
        media.check_clip(tiny, "768p", 6)


def test_a_clip_far_shorter_than_paid_for_is_refused(bframe_clip: Path) -> None:
    with pytest.raises(MediaError, match=r"lasts 3\.0 s, far shorter than the 10 s paid for"):
        media.check_clip(bframe_clip, "512p", 10)


def test_probe_of_a_text_file_is_a_media_error(not_a_video: Path) -> None:
    with pytest.raises(MediaError, match=r"clip\.mp4"):
        media.probe(not_a_video)


def test_probe_of_a_missing_file_is_a_media_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="not found"):
        media.probe(tmp_path / "missing.mp4")
