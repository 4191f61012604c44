"""hailuo_emulator/synthetic.py: the stand-in provider clips the emulator, the tests and the
benchmarks use are real, valid H.264 that differ by seed."""

from __future__ import annotations

from pathlib import Path

from support.video import decode_all, difference

from hailuo_emulator.synthetic import synthetic_clip
from hailuo_pipe import media


def test_synthetic_clip_pads_to_a_size_and_stays_valid(tmp_path: Path) -> None:
    clip = tmp_path / "big.mp4"
    synthetic_clip(clip, width=160, height=96, seconds=1, seed=1, min_bytes=2_000_000)
    assert clip.stat().st_size >= 2_000_000
    assert media.probe(clip).frames == 25
    assert len(decode_all(clip)) == 25


def test_synthetic_clips_differ_by_seed(tmp_path: Path) -> None:
    for seed in (1, 2):
        synthetic_clip(tmp_path / f"{seed}.mp4", width=160, height=96, seconds=0.2, seed=seed)
    one, two = (decode_all(tmp_path / f"{seed}.mp4")[0] for seed in (1, 2))
    assert difference(one, two, keep=1.0) > 10
