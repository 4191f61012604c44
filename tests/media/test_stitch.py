"""media/stitch.py against real clips: the cut is the scenes' frames in order, copied exactly
when it can be and re-encoded to the first clip's shape when it cannot."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
from support.video import ONE_KEYFRAME, decode_all

from hailuo_emulator.synthetic import synthetic_clip
from hailuo_pipe import media
from hailuo_pipe.errors import MediaError


def test_stitch_copies_alike_clips_exactly(bframe_clip: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.mp4"
    synthetic_clip(other, width=320, height=180, seconds=1.2, seed=8, x264=ONE_KEYFRAME)
    out = tmp_path / "cut.mp4"
    assert media.stitch([bframe_clip, other, bframe_clip], out) == "copy"
    info = media.probe(out)
    assert info.frames == 75 + 30 + 75
    assert info.duration == pytest.approx(7.2)
    a, b = decode_all(bframe_clip), decode_all(other)
    assert [f.tobytes() for f in decode_all(out)] == [f.tobytes() for f in a + b + a]


def test_stitch_reencodes_other_sizes_to_the_first(bframe_clip: Path, tmp_path: Path) -> None:
    bigger = tmp_path / "bigger.mp4"
    synthetic_clip(bigger, width=480, height=270, seconds=1, seed=2)
    square = tmp_path / "square.mp4"
    synthetic_clip(square, width=200, height=200, seconds=0.4, seed=4)
    out = tmp_path / "cut.mp4"
    assert media.stitch([bframe_clip, bigger, square], out) == "reencode"
    info = media.probe(out)
    assert (info.width, info.height, info.fps, info.codec) == (320, 180, Fraction(25), "h264")
    assert info.frames == 75 + 25 + 10
    assert info.duration == pytest.approx(4.4)


def test_stitch_keeps_durations_across_frame_rates(tmp_path: Path) -> None:
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    synthetic_clip(a, width=160, height=96, seconds=1, fps=25)
    synthetic_clip(b, width=160, height=96, seconds=1, fps=30)
    out = tmp_path / "cut.mp4"
    assert media.stitch([a, b], out) == "reencode"
    info = media.probe(out)
    assert (info.frames, info.fps) == (50, Fraction(25))
    assert info.duration == pytest.approx(2.0)


def test_stitch_reencodes_clips_from_differently_configured_encoders(tmp_path: Path) -> None:
    # Same size and rate, but CAVLC (ultrafast) vs CABAC (x264 defaults): their parameter sets
    # differ, so copying packets into one MP4 track would not decode.
    fast, slow = tmp_path / "fast.mp4", tmp_path / "slow.mp4"
    synthetic_clip(fast, width=160, height=96, seconds=1)
    synthetic_clip(slow, width=160, height=96, seconds=1, x264=ONE_KEYFRAME)
    out = tmp_path / "cut.mp4"
    assert media.stitch([fast, slow], out) == "reencode"
    assert media.probe(out).frames == 50
    assert len(decode_all(out)) == 50


def test_stitch_of_nothing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError):
        media.stitch([], tmp_path / "cut.mp4")


def test_stitch_of_bad_files_is_a_media_error(
    not_a_video: Path, bframe_clip: Path, tmp_path: Path
) -> None:
    with pytest.raises(MediaError):
        media.stitch([bframe_clip, not_a_video], tmp_path / "cut.mp4")
    assert not (tmp_path / "cut.mp4").exists()
