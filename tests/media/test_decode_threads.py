"""Decoding threads are only started for clips large enough to pay for them; both ways give
the same frames, bit for bit."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from hailuo_emulator.synthetic import synthetic_clip
from hailuo_pipe.media import frames as media_frames

ONE_KEYFRAME = {"g": "1000", "x264-params": "scenecut=0"}


@pytest.mark.parametrize("threaded", [False, True])
@pytest.mark.parametrize("x264", [ONE_KEYFRAME, {"g": "12"}])
def test_edge_frames_are_exact_with_or_without_decoding_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threaded: bool, x264: dict[str, str]
) -> None:
    clip = tmp_path / "clip.mp4"
    synthetic_clip(clip, width=320, height=180, seconds=2, seed=11, x264=x264)
    with av.open(str(clip)) as container:
        frames = [f.to_image() for f in container.decode(video=0)]
    used: list[str] = []
    real = media_frames._last_idr

    def spy(packets, stream, before):  # type: ignore[no-untyped-def]
        used.append(str(stream.codec_context.thread_type))
        return real(packets, stream, before=before)

    monkeypatch.setattr(media_frames, "_last_idr", spy)
    monkeypatch.setattr(media_frames, "THREADED_DECODE_FROM", 0 if threaded else 10**12)
    got = media_frames.edge_images(clip, ("first", "last"))
    assert got["last"].tobytes() == frames[-1].tobytes()
    assert got["first"].tobytes() == frames[0].tobytes()
    assert used and all(("AUTO" in t) == threaded for t in used), used


def test_a_real_sized_clip_is_decoded_with_threads() -> None:
    assert 1366 * 768 * 25 * 6 >= media_frames.THREADED_DECODE_FROM > 160 * 90 * 25
