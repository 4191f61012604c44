"""The render's sharded connection pool: requests spread over small shards, each connection is
its shard's until the body is closed, and nothing is lost when a request fails."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from hailuo_emulator import Emulator
from hailuo_pipe.render.pool import SHARD, ShardedTransport


def test_a_burst_never_queues_in_one_shard_while_another_has_room(emulator: Emulator) -> None:
    seen: list[list[int]] = []

    async def burst() -> list[int]:
        pool = ShardedTransport(4 * SHARD)
        async with httpx.AsyncClient(transport=pool) as client:
            request = client.build_request("GET", f"{emulator.url}/_emulator/jobs")
            streams = [await client.send(request, stream=True) for _ in range(4 * SHARD)]
            seen.append(list(pool._busy))  # every body still open
            for response in streams:
                await response.aread()
                await response.aclose()
            return list(pool._busy)

    after = asyncio.run(burst())
    assert seen == [[SHARD] * 4]  # spread evenly: no shard full while another had room
    assert after == [0, 0, 0, 0]  # each connection handed back once its body was closed


def test_a_streamed_download_holds_its_shard_until_it_is_read(emulator: Emulator) -> None:
    async def run() -> tuple[list[int], list[int], bytes]:
        pool = ShardedTransport(2 * SHARD)
        async with httpx.AsyncClient(transport=pool) as client:
            async with client.stream("GET", f"{emulator.url}/_emulator/jobs") as response:
                during = list(pool._busy)
                body = await response.aread()
            return during, list(pool._busy), body

    during, after, body = asyncio.run(run())
    assert sorted(during) == [0, 1] and after == [0, 0]
    assert body.startswith(b"{")


def test_a_request_that_fails_gives_its_shard_back(unused_port: int) -> None:
    async def run() -> list[int]:
        pool = ShardedTransport(SHARD)
        async with httpx.AsyncClient(transport=pool) as client:
            for _ in range(3 * SHARD):  # more failures than the shard has connections
                with pytest.raises(httpx.ConnectError):
                    await client.get(f"http://127.0.0.1:{unused_port}/")
            return list(pool._busy)

    assert asyncio.run(run()) == [0]


def test_a_render_at_high_concurrency_keeps_each_shard_small() -> None:
    pool = ShardedTransport(200)
    assert len(pool._shards) == 25 and all(s._pool._max_connections == 8 for s in pool._shards)
    assert sum(s._pool._max_keepalive_connections for s in pool._shards) == 200  # all kept


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
