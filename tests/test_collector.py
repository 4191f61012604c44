"""The collector is paused while the command line loads, and resumed for what runs long."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from hailuo_pipe import collector


@pytest.fixture(autouse=True)
def _restored() -> Iterator[None]:
    enabled, threshold = gc.isenabled(), gc.get_threshold()
    yield
    collector._paused = False
    gc.unfreeze()
    gc.set_threshold(*threshold)
    (gc.enable if enabled else gc.disable)()


def test_resume_after_pause_collects_again_over_only_what_is_new() -> None:
    collector.pause()
    assert not gc.isenabled()
    built = [[i] for i in range(1000)]
    collector.resume()
    assert gc.isenabled() and gc.get_threshold()[0] == 50_000
    assert gc.get_freeze_count() >= len(built)  # left out of every later collection
    collector.resume()  # once only
    assert gc.get_freeze_count() >= len(built)


def test_a_library_caller_who_never_paused_is_left_as_it_was() -> None:
    gc.set_threshold(700, 10, 10)
    before = gc.get_freeze_count()
    collector.resume()
    assert gc.isenabled() and gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == before
