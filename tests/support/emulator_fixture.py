"""The provider emulator for tests: `emulator` (reset for each test) and `run_emulator`.

conftest imports `emulator` and `emulator_process`; bench scripts use `run_emulator`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hailuo_emulator import Emulator, run_emulator

__all__ = ["Emulator", "emulator", "emulator_process", "run_emulator"]


@pytest.fixture(scope="session")
def emulator_process() -> Iterator[Emulator]:
    """One emulator process for the session: starting one costs a few hundred ms."""
    with run_emulator() as emu:
        yield emu


@pytest.fixture
def emulator(emulator_process: Emulator) -> Iterator[Emulator]:
    """A clean emulator: no jobs, no logged requests, default switches (jobs last 0.3 s)."""
    emulator_process.reset(job_seconds=0.3)
    yield emulator_process

PREFIXES = ("WAVESPEED", "GMI", "MINIMAX", "RUNWARE", "APIFRAME")
# (key variable, base URL variable) of the providers whose names follow their own clients
NAMED = (("FAL_KEY", "FAL_BASE_URL"), ("REPLICATE_API_TOKEN", "REPLICATE_BASE_URL"))


def provider_env(emu) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Environment that points every hosted provider at the emulator."""
    env: dict[str, str] = {}
    for prefix in PREFIXES:
        env[f"{prefix}_API_KEY"] = emu.key
        env[f"{prefix}_BASE_URL"] = emu.url
    for key, url in NAMED:
        env[key] = emu.key
        env[url] = emu.url
    return env


def key_variables() -> tuple[str, ...]:
    """Every hosted provider's key variable (to set them all to one secret, say)."""
    return (*(f"{p}_API_KEY" for p in PREFIXES), *(key for key, _ in NAMED))
