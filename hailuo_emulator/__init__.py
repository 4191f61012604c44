"""A loopback emulator of the seven hosted Hailuo 02 APIs, for tests and benchmarks.

    with run_emulator(job_seconds=0.3) as emu:
        provider = WaveSpeedProvider(base_url=emu.url, api_key=emu.key)
        emu.configure(rate_limit={"every": 2, "retry_after": 0.1})
        emu.jobs()["wavespeed"], emu.requests()

It runs as a separate process (`python -m hailuo_emulator --port 0`), so a test's event
loop and the server never share a GIL-bound thread pool.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from hailuo_emulator.state import DEFAULT_KEY

__all__ = ["DEFAULT_KEY", "Emulator", "run_emulator"]


@dataclass(frozen=True)
class Emulator:
    """A running emulator: its base URL, the key it expects, and its control endpoints."""

    url: str
    key: str = DEFAULT_KEY
    ca: str | None = None  # the certificate an HTTPS emulator serves, to trust it

    def _control(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(
            method,
            f"{self.url}/_emulator/{path}",
            json=body,
            timeout=10,
            verify=ssl.create_default_context(cafile=self.ca) if self.ca else True,
        )
        response.raise_for_status()
        return response.json()

    def configure(self, **switches: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._control("POST", "config", switches)
        return result

    def warm(self) -> None:
        """Return once the clips the emulator serves are made: it makes them in the background
        at start, and a benchmark should not time that CPU work as its own."""
        self._control("POST", "warm")

    def reset(self, **switches: Any) -> None:
        self._control("POST", "reset")
        if switches:
            self.configure(**switches)

    def requests(self, kind: str | None = None) -> list[dict[str, Any]]:
        log: list[dict[str, Any]] = self._control("GET", "requests")["requests"]
        return [r for r in log if kind is None or r["kind"] == kind]

    def jobs(self) -> dict[str, int]:
        counts: dict[str, int] = self._control("GET", "jobs")
        return counts

    def faults(self) -> dict[str, int]:
        """How many times each fault switch fired since it was last set (injected faults)."""
        fired: dict[str, int] = self._control("GET", "faults")["fired"]
        return fired

    def job_list(self) -> list[dict[str, Any]]:
        """Every paid job (id, provider, request body, outcome): the providers' dashboards."""
        jobs: list[dict[str, Any]] = self._control("GET", "job-list")["jobs"]
        return jobs


@contextlib.contextmanager
def run_emulator(
    key: str = DEFAULT_KEY, tls: tuple[str, str] | None = None, **switches: Any
) -> Iterator[Emulator]:
    """Start an emulator process on a free loopback port; stop it on exit. `tls` (a
    certificate and its key, PEM files) makes it serve HTTPS."""
    cmd = [
        sys.executable,
        "-m",
        "hailuo_emulator",
        "--port",
        "0",
        "--key",
        key,
        "--config",
        json.dumps(switches),
        *(("--tls", *tls) if tls else ()),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.isdigit():
            raise RuntimeError(f"the emulator did not start (said {line!r})")
        scheme = "https" if tls else "http"
        yield Emulator(f"{scheme}://127.0.0.1:{line}", key, tls[0] if tls else None)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
