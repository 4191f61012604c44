from __future__ import annotations

import pytest

from hailuo_pipe.storyboard.graph import CycleError, Graph
from hailuo_pipe.storyboard.model import FrameRef, ImageInput, Scene


def scene(sid: str, *refs: str) -> Scene:
    image = ImageInput(ref=FrameRef(refs[0], "last")) if refs else None
    end = ImageInput(ref=FrameRef(refs[1], "first")) if len(refs) > 1 else None
    return Scene(
        id=sid,
        prompt="p",
        provider="preview",
        duration=6,
        resolution="768p",
        prompt_optimizer=False,
        image=image,
        end_image=end,
    )


def test_topological_keeps_storyboard_order_where_free() -> None:
    g = Graph.of([scene("c", "b"), scene("a"), scene("b", "a"), scene("d")])
    assert g.topological() == ["a", "b", "c", "d"]
    assert g.closure(["c"]) == {"a", "b", "c"}
    assert g.downstream(["a"]) == {"b", "c"}
    assert g.taken() == {"a", "b"}  # the scenes whose frames another one takes


def test_cycle_is_named() -> None:
    g = Graph.of([scene("a", "c"), scene("b", "a"), scene("c", "b"), scene("d")])
    with pytest.raises(CycleError) as err:
        g.topological()
    assert err.value.cycle == ["a", "c", "b", "a"]


def test_long_chain_has_no_recursion_limit() -> None:
    scenes = [scene("s0")] + [scene(f"s{i}", f"s{i - 1}") for i in range(1, 5000)]
    assert Graph.of(scenes).topological()[-1] == "s4999"
