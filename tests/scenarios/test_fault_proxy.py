"""Renders through a TCP fault proxy: resets, half bodies, stalls, late answers, trickles.

tests/fault_proxy.py sits between a real `hailuo-pipe render` subprocess and the emulator; the
request always reaches the emulator (a submit creates its paid job) and the answer is broken on
a seeded share of connections. Whatever it does: every scene done with its clip intact, one
paid job per scene, no traceback. `make soak` runs it longer (20 scenes).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from support.fault_proxy import FaultProxy, run_through_proxy

from hailuo_emulator import Emulator


def upstream(emu: Emulator) -> tuple[str, int]:
    host, port = emu.url.removeprefix("http://").split(":")
    return host, int(port)


def get(proxy: FaultProxy, timeout: float) -> bytes:
    """One request as the render's own HTTP client sends it."""
    with httpx.Client(timeout=timeout) as client:
        return client.get(f"{proxy.url}/_emulator/jobs").raise_for_status().content


@pytest.mark.parametrize(
    ("fault", "raised"),
    [
        ("reset", (httpx.ReadError, httpx.RemoteProtocolError)),
        ("half", (httpx.RemoteProtocolError,)),
        ("stall", (httpx.ReadTimeout, httpx.RemoteProtocolError)),
        ("late", (httpx.ReadTimeout,)),
    ],
)
def test_each_fault_breaks_the_answer(
    fault: str, raised: tuple[type[BaseException], ...], emulator: Emulator
) -> None:
    with FaultProxy(upstream(emulator), seed=1, rate=1.0, faults=(fault,), client_timeout=0.3) as p:
        with pytest.raises(raised):
            get(p, timeout=0.3)
        assert p.injected == {fault: 1}


def test_a_trickle_is_slow_but_whole(emulator: Emulator) -> None:
    with FaultProxy(upstream(emulator), seed=1, rate=1.0, faults=("trickle",)) as p:
        assert json.loads(get(p, timeout=2)) == emulator.jobs()
        assert p.injected == {"trickle": 1}


@pytest.mark.parametrize("seed", [2, 4])
def test_a_chained_render_through_network_faults_finishes_and_pays_once_per_scene(
    seed: int, emulator: Emulator, tmp_path: Path
) -> None:
    figures = run_through_proxy(emulator, tmp_path, scenes=6, seed=seed, rate=0.5, rounds=6)
    print(f"\nFIGURES fault-proxy seed {seed}: {json.dumps(figures.to_json(), sort_keys=True)}")
    assert figures.ok, figures  # done, clips intact, one paid job a scene, no traceback
    assert figures.paid_jobs == 6
    assert sum(figures.injected.values()) >= 3 and len(figures.injected) >= 2, figures.injected
