"""A TCP fault proxy between `hailuo-pipe render` and the provider emulator.

The emulator's own fault switches (tests/support/soak.py) break answers at the HTTP level, politely.
This proxy breaks the byte stream itself, as a flaky network or a load balancer does: the
request always reaches the emulator whole (so a submit creates its paid job), and then, on a
seeded `rate` of connections, the answer is
  reset    cut by a TCP RST after a few hundred bytes
  half     cut by a clean close after a few hundred bytes (a half body)
  stall    stopped after a few bytes and held past the client's read timeout
  late     held back whole until after the client gave up, then sent
  trickle  sent in small pieces with pauses, each shorter than the read timeout

    python tests/support/fault_proxy.py --scenes 20 --seed 1 --rate 0.2     # what `make soak` runs

renders the soak storyboard through the proxy as a user would: a real `hailuo-pipe render`
subprocess, rerun until every scene is done, parked scenes settled from the dashboard with
`--adopt`/`--resubmit` exactly as soak.py does. Then: every scene done with its clip intact,
exactly one paid job per scene, no traceback. `--cli ARGS` is that subprocess: the real
command with a shorter HTTP timeout and retry waits (so a stall costs a second, not a minute).

Stdlib only; every socket is on 127.0.0.1 and has a timeout; every thread is a daemon.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1]))  # run as a script: tests/ holds support/

FAULTS = ("reset", "half", "stall", "late", "trickle")
HTTP_TIMEOUT = 1.0  # the render's read timeout under the proxy (`--cli`)
RETRY_SCALE = 0.2  # the render's retry waits, as a fraction of the real ones (`--cli`)
TRACEBACK = "Traceback (most recent call last)"


class FaultProxy:
    """Listens on 127.0.0.1; forwards every connection to `upstream`, faulting some answers."""

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        seed: int,
        rate: float,
        faults: tuple[str, ...] = FAULTS,
        client_timeout: float = HTTP_TIMEOUT,
    ) -> None:
        assert upstream[0] in ("127.0.0.1", "localhost"), "the proxy only talks to loopback"
        self.upstream = upstream
        self.rng = random.Random(seed)
        self.rate = rate
        self.faults = faults
        self.client_timeout = client_timeout
        self.injected: Counter[str] = Counter()
        self.connections = 0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def configure(self, *, rate: float) -> None:
        with self._lock:
            self.rate = rate

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._thread.join(5)
        self._listener.close()
        with self._lock:
            for sock in list(self._open):
                with contextlib.suppress(OSError):
                    sock.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:  # drawn in accept order: the same seed, the same sequence
                self.connections += 1
                fault = self.rng.choice(self.faults) if self.rng.random() < self.rate else None
                cut = self.rng.uniform(0.05, 0.95)  # where in the first piece to cut
                if fault:
                    self.injected[fault] += 1
            threading.Thread(target=self._serve, args=(client, fault, cut), daemon=True).start()

    def _track(self, sock: socket.socket, add: bool) -> None:
        with self._lock:
            (self._open.add if add else self._open.discard)(sock)

    def _serve(self, client: socket.socket, fault: str | None, cut: float) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=30)
        except OSError:
            client.close()
            return
        for sock in (client, upstream):
            sock.settimeout(30)
            self._track(sock, True)
        answered = threading.Event()
        pump = threading.Thread(target=self._pump, args=(client, upstream, answered), daemon=True)
        pump.start()
        try:
            self._answer(upstream, client, fault, cut)
        except OSError:
            pass
        finally:
            # a socket another thread is reading is not really closed (no FIN, no RST) until
            # that read returns: the pump stops first
            answered.set()
            pump.join(5)
            for sock in (client, upstream):
                self._track(sock, False)
                with contextlib.suppress(OSError):
                    sock.close()

    def _pump(self, src: socket.socket, dst: socket.socket, answered: threading.Event) -> None:
        """Client to emulator, untouched: the request always arrives, the API always acts."""
        with contextlib.suppress(OSError, ValueError):
            while not answered.is_set():
                if not select.select([src], [], [], 0.05)[0]:
                    continue
                if not (data := src.recv(65536)):
                    break
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def _answer(
        self, src: socket.socket, dst: socket.socket, fault: str | None, cut: float
    ) -> None:
        """Emulator to client, with this connection's fault."""
        sent = 0
        held = b""
        while True:
            data = src.recv(65536)
            if not data:
                return
            if fault in ("reset", "half", "stall"):
                # inside the first piece, so even a short JSON answer is broken, not let through
                dst.sendall(data[: max(1, int(len(data) * cut))] if len(data) > 1 else b"")
                if fault == "reset":  # SO_LINGER 0: close() sends RST, not FIN
                    dst.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                elif fault == "stall":
                    self._stopped.wait(self.client_timeout * 2.5)
                return
            if fault == "late":
                held += data
                self._stopped.wait(self.client_timeout * 1.5)
                dst.sendall(held)  # the client has given up: this usually fails
                fault, held = None, b""
                continue
            if fault == "trickle" and sent < 16384:
                for i in range(0, len(data), 256):
                    dst.sendall(data[i : i + 256])
                    self._stopped.wait(min(0.02, self.client_timeout / 10))
            else:
                dst.sendall(data)
            sent += len(data)


# -- the render as a user runs it, through the proxy -------------------------------------------


def cli_main(args: list[str]) -> None:
    """`hailuo-pipe ARGS`, the real command, with a shorter read timeout and retry waits."""
    from dataclasses import replace

    import hailuo_pipe.render as rendering
    from hailuo_pipe import __main__
    from hailuo_pipe.providers.http import HostedProvider

    timeout = float(os.environ.get("FAULT_PROXY_HTTP_TIMEOUT", HTTP_TIMEOUT))
    scale = float(os.environ.get("FAULT_PROXY_RETRY_SCALE", RETRY_SCALE))
    policy = HostedProvider.retry_policy
    HostedProvider.retry_policy = replace(
        policy, base_delay=policy.base_delay * scale, max_delay=policy.max_delay * scale
    )
    real = rendering.render
    rendering.render = lambda board, opts: real(board, replace(opts, http_timeout=timeout))
    sys.argv = ["hailuo-pipe", *args]
    __main__.entry()


@dataclass
class ProxyFigures:
    scenes: int
    seed: int
    rate: float
    injected: dict[str, int] = field(default_factory=dict)
    connections: int = 0
    renders_under_faults: int = 0
    done_under_faults: bool = False
    renders_after: int = 0
    failed_scene_lines: int = 0
    parked_unknown: int = 0
    adopted: int = 0
    resubmitted: int = 0
    paid_jobs: int = 0
    wall_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _render(spec: Path, env: dict[str, str], extra: list[str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, __file__, "--cli", "render", "--quiet", "-j", "4", *extra, str(spec)]
    try:
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired as err:
        return subprocess.CompletedProcess(command, -999, str(err.stdout), str(err.stderr))


def _rounds(
    spec: Path, emu: Any, env: dict[str, str], figures: ProxyFigures, rounds: int
) -> tuple[int, bool]:
    """Render until done (at most `rounds` times), settling parked scenes between renders."""
    from hailuo_pipe.state.lockfile import PARKED, Lockfile
    from support import soak

    lock_path = spec.with_suffix(".lock")
    extra: list[str] = []
    accounted: set[str] = set()
    for n in range(1, rounds + 1):
        proc = _render(spec, env, extra)
        if TRACEBACK in proc.stdout + proc.stderr:
            figures.problems.append(f"a traceback: {proc.stderr[-1500:]}")
        if proc.returncode not in (0, 1):
            figures.problems.append(f"render ended {proc.returncode}: {proc.stderr[-800:]}")
        figures.failed_scene_lines += sum(
            1 for line in proc.stderr.splitlines() if line.startswith("error: ")
        )
        lock = Lockfile.load(lock_path, soak.NAME)
        accounted |= soak.recorded_jobs(lock)
        states = [e.state for e in lock.scenes.values()]
        if len(states) == figures.scenes and set(states) == {"done"}:
            return n, True
        figures.parked_unknown += sum(1 for s in states if s in PARKED)
        adopt, resubmit, problems = soak.dashboard(
            lock_path, emu, soak.scene_ids(figures.scenes), accounted
        )
        figures.problems += problems
        figures.adopted += len(adopt)
        figures.resubmitted += len(resubmit)
        extra = [a for sid in resubmit for a in ("--resubmit", sid)]
        extra += [a for sid, job in adopt.items() for a in ("--adopt", f"{sid}={job}")]
    return rounds, False


def run_through_proxy(
    emu: Any, workdir: Path, *, scenes: int = 6, seed: int = 1, rate: float = 0.25, rounds: int = 6
) -> ProxyFigures:
    """Render the soak storyboard through a FaultProxy until done; then verify."""
    from support import soak
    from support.emulator_fixture import provider_env

    started = time.monotonic()
    emu.reset(job_seconds=0.2, seed=seed)
    spec = soak.write_workdir(workdir, scenes)
    figures = ProxyFigures(scenes=scenes, seed=seed, rate=rate)
    host, port = emu.url.removeprefix("http://").split(":")
    with FaultProxy((host, int(port)), seed=seed, rate=rate) as proxy:
        env = {**os.environ, **provider_env(emu), "PYTHONUNBUFFERED": "1"}
        env |= {k: proxy.url for k in env if k.endswith("_BASE_URL")}
        figures.renders_under_faults, figures.done_under_faults = _rounds(
            spec, emu, env, figures, rounds
        )
        figures.injected = dict(proxy.injected)
        if not figures.done_under_faults:
            proxy.configure(rate=0.0)
            figures.renders_after, done = _rounds(spec, emu, env, figures, 3)
            if not done:
                figures.problems.append("not done, even once the network was healthy")
        figures.connections = proxy.connections
    figures.problems += soak.verify_outputs(spec, scenes)
    if left := soak.temp_files(workdir):  # a download cut short must not stay behind
        figures.problems.append(f"{left} temporary files left behind")
    problems, figures.paid_jobs, failed = soak.verify_jobs(emu, scenes)
    figures.problems += problems
    if failed:
        figures.problems.append(f"{failed} jobs failed at the provider without fail_jobs")
    figures.wall_seconds = round(time.monotonic() - started, 1)
    return figures


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--cli"]:
        cli_main(argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args(argv)
    from hailuo_emulator import run_emulator

    with run_emulator() as emu, tempfile.TemporaryDirectory(prefix="hailuo-proxy-") as tmp:
        figures = run_through_proxy(
            emu, Path(tmp), scenes=args.scenes, seed=args.seed, rate=args.rate, rounds=args.rounds
        )
    print(json.dumps(figures.to_json(), indent=2))
    return 0 if figures.ok else 1


if __name__ == "__main__":
    sys.exit(main())
