"""The connection pool of a render's HTTP clients, in shards of a few connections each.

httpcore's pool looks at every connection it holds on each request it starts and ends (whether
it expired, whether its socket is readable: two system calls each), so with a hundred jobs in
flight a request cost O(connections) of CPU, and a render O(jobs x concurrency). It also closes
any idle connection while it holds more than its keep-alive limit, so every burst of polls
opened its connections anew. Here a client's connections are split into shards of at most
`SHARD` connections, all kept alive, and each request goes to the shard with the fewest
requests under way: a request looks at a few connections, and no shard makes a request wait
while another has a free connection.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import AsyncIterator, Callable

import httpx

SHARD = 8  # connections per shard: the pool's per-request scan grows with it


class ShardedTransport(httpx.AsyncBaseTransport):
    def __init__(self, connections: int, verify: ssl.SSLContext | bool = True) -> None:
        count = max(1, math.ceil(connections / SHARD))
        size = math.ceil(connections / count)
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        self._shards = [
            httpx.AsyncHTTPTransport(verify=verify, limits=limits) for _ in range(count)
        ]
        self._busy = [0] * count  # requests under way per shard, until their body is closed

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        busy = self._busy
        shard = busy.index(min(busy))
        busy[shard] += 1
        try:
            response = await self._shards[shard].handle_async_request(request)
        except BaseException:
            busy[shard] -= 1
            raise
        # the connection is the shard's until the body is read or closed (a download streams)
        body = response.stream
        if isinstance(body, httpx.AsyncByteStream):  # what httpx's own transport answers
            response.stream = _Released(body, lambda: self._done(shard))
        else:
            self._done(shard)
        return response

    def _done(self, shard: int) -> None:
        self._busy[shard] -= 1

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()


class _Released(httpx.AsyncByteStream):
    """A response body that calls `release` once, when it is closed."""

    def __init__(self, stream: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()
