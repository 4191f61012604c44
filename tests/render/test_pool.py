"""The render's HTTP transport (render/pool.py) against real servers on loopback: connections
reused only when that is safe, places given back however a request ends, and the exception
types providers/http.py relies on to know whether a request may have been sent."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from support.emulator_fixture import provider_env

from hailuo_emulator import Emulator
from hailuo_pipe.render import RenderOptions, render
from hailuo_pipe.render.pool import AsyncioTransport
from hailuo_pipe.validate import load_storyboard


def _client(connections: int = 8) -> tuple[httpx.AsyncClient, AsyncioTransport]:
    pool = AsyncioTransport(connections, ssl.create_default_context())
    return httpx.AsyncClient(transport=pool, timeout=httpx.Timeout(2.0)), pool


def test_keep_alive_reuses_one_connection_and_reads_bodies_whole(emulator: Emulator) -> None:
    async def run() -> tuple[list[bytes], int]:
        client, pool = _client()
        async with client:
            bodies = [(await client.get(f"{emulator.url}/_emulator/jobs")).content for _ in "abc"]
            return bodies, pool._idle_count

    bodies, idle = asyncio.run(run())
    assert all(b.startswith(b"{") for b in bodies)
    assert idle == 1  # three requests one after another: one connection, kept


def test_requests_past_the_cap_wait_and_every_place_comes_back(emulator: Emulator) -> None:
    async def run() -> tuple[int, int]:
        client, pool = _client(connections=4)
        async with client:
            url = f"{emulator.url}/_emulator/jobs"
            held = [
                await client.send(client.build_request("GET", url), stream=True) for _ in "abcd"
            ]
            with pytest.raises(httpx.PoolTimeout):  # four under way: a fifth waits, then gives up
                await client.get(url, timeout=httpx.Timeout(2.0, pool=0.2))
            for response in held:
                await response.aclose()  # closed unread: never handed to another request
            assert pool._slots is not None
            return pool._slots._value, pool._idle_count

    assert asyncio.run(run()) == (4, 0)


def test_a_refused_connection_is_connect_error_and_gives_its_place_back(
    unused_port: int,
) -> None:
    async def run() -> int:
        client, pool = _client(connections=2)
        async with client:
            for _ in range(5):  # more failures than there are places
                with pytest.raises(httpx.ConnectError):
                    await client.get(f"http://127.0.0.1:{unused_port}/")
            assert pool._slots is not None
            return pool._slots._value

    assert asyncio.run(run()) == 2


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- a raw server that answers as told -------------------------------------------------------


@pytest.fixture
def raw_server() -> Iterator[Callable[[list[bytes]], str]]:
    """A loopback server whose n-th connection is sent answers[n] (then closed, unless the
    answer ends with b"KEEP"), whatever it was asked; what each connection received is kept."""
    servers: list[socket.socket] = []

    def start(answers: list[bytes]) -> str:
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()
        servers.append(server)

        def serve() -> None:
            for answer in answers:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                conn.recv(65536)
                keep = answer.endswith(b"KEEP")
                conn.sendall(answer.removesuffix(b"KEEP"))
                if keep:
                    threading.Event().wait(1.0)
                conn.close()

        threading.Thread(target=serve, daemon=True).start()
        return f"http://127.0.0.1:{server.getsockname()[1]}/"

    yield start
    for server in servers:
        server.close()


def _get(url: str, *, timeout: float = 2.0) -> httpx.Response:
    async def run() -> httpx.Response:
        client, _ = _client()
        async with client:
            response = await client.get(url, timeout=timeout)
            return response

    return asyncio.run(run())


def test_a_server_that_closes_without_answering_is_a_protocol_error(
    raw_server: Callable[[list[bytes]], str],
) -> None:
    url = raw_server([b""])
    with pytest.raises(httpx.RemoteProtocolError):  # sent, so never "could not connect"
        _get(url)


def test_a_body_cut_short_is_an_error_not_a_short_answer(
    raw_server: Callable[[list[bytes]], str],
) -> None:
    url = raw_server([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"])
    with pytest.raises(httpx.RemoteProtocolError):
        _get(url)


def test_a_silent_server_is_a_read_timeout(raw_server: Callable[[list[bytes]], str]) -> None:
    url = raw_server([b"KEEP"])
    with pytest.raises(httpx.ReadTimeout):
        _get(url, timeout=0.2)


def test_a_body_until_close_chunked_and_informational_answers_are_read(
    raw_server: Callable[[list[bytes]], str],
) -> None:
    url = raw_server(
        [
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-close",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        ]
    )
    assert _get(url).content == b"until-close"
    assert _get(url).content == b"abc"


def test_huge_headers_are_refused(raw_server: Callable[[list[bytes]], str]) -> None:
    url = raw_server([b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"])
    with pytest.raises(httpx.RemoteProtocolError):
        _get(url)


def test_an_idle_connection_with_bytes_waiting_is_never_reused(
    raw_server: Callable[[list[bytes]], str],
) -> None:
    """Some servers send "408 Request Timeout" on an idle keep-alive connection before closing
    it: read as the answer to the next request, a submit would be judged by it."""
    url = raw_server(
        [
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 408 Request Timeout\r\n"
            b"Content-Length: 0\r\n\r\nKEEP",
            b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nnew",
        ]
    )

    async def run() -> tuple[bytes, int]:
        client, _ = _client()
        async with client:
            first = await client.get(url)
            await asyncio.sleep(0.1)
            second = await client.get(url)
            return first.content, second.status_code

    assert asyncio.run(run()) == (b"ok", 201)


def test_a_render_behind_a_proxy_goes_through_it(
    write_spec: Callable[[str], Path],
    emulator: Emulator,
    unused_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client given its own transport ignores proxy variables; the render's does not."""
    spec = write_spec("version: 1\nname: p\nscenes: [{id: a, prompt: x, provider: wavespeed}]\n")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{unused_port}")
    monkeypatch.setenv("NO_PROXY", "")
    result = render(load_storyboard(spec), RenderOptions(environ=provider_env(emulator)))
    [scene] = result.results
    assert scene.outcome == "failed" and "could not connect" in (scene.error or "")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # also lets this test ask the emulator
    assert emulator.requests("submit") == []  # it went to the proxy, which is not there
    result = render(load_storyboard(spec), RenderOptions(environ=provider_env(emulator)))
    assert [r.outcome for r in result.results] == ["rendered"]
