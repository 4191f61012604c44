"""A real S3-protocol server on loopback: moto's server mode, in a subprocess.

    with moto_s3() as endpoint:            # "http://127.0.0.1:PORT"
        env = s3_environ(endpoint, "bucket-name")   # creates the bucket; AWS_* settings

or the pytest fixture `s3_server` (one server per test session).

moto 5.2 checks S3's conditional-write headers (If-None-Match / If-Match) and then writes, with
no lock between the two, so under concurrent requests two conditional writers can both win
(seen about once in 400 races of 16 writers). Real S3 makes the check and the write atomic; so
that the race tests test our code, not moto's gap, the server here runs every request that
carries a conditional header under one lock. Everything else is moto as shipped.

Run as a script (`python tests/s3_fixture.py PORT`) it is that server.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HOST = "127.0.0.1"
_CONDITIONAL = ("HTTP_IF_MATCH", "HTTP_IF_NONE_MATCH")


def _serve(port: int) -> None:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def atomic_conditionals(environ: dict[str, Any], start_response: Any) -> Any:
        if environ["REQUEST_METHOD"] != "GET" and any(h in environ for h in _CONDITIONAL):
            with lock:
                return list(app(environ, start_response))
        return app(environ, start_response)

    run_simple(HOST, port, atomic_conditionals, threaded=True, request_handler=MotoRequestHandler)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto_s3(timeout: float = 20.0) -> Iterator[str]:
    """Start the server on a free loopback port; yield its endpoint URL; stop it."""
    for _attempt in range(3):
        port = _free_port()
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "MOTO_PORT": str(port)},
        )
        endpoint = f"http://{HOST}:{port}"
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        if proc.poll() is None and time.monotonic() < deadline:
            try:
                yield endpoint
            finally:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            return
        proc.kill()
        proc.wait()
    raise RuntimeError("the moto S3 server did not start")


def s3_environ(endpoint: str, bucket: str | None = None) -> dict[str, str]:
    """AWS_* settings for the server (fake credentials); creates `bucket` when given."""
    env = {
        "AWS_ACCESS_KEY_ID": "testing-key-id",
        "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    if bucket:
        import boto3

        boto3.session.Session(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        ).client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    return env


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """The endpoint URL of a moto S3 server shared by the whole test session."""
    pytest.importorskip("boto3")
    pytest.importorskip("moto.server")
    with moto_s3() as endpoint:
        yield endpoint


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
