"""`python -m hailuo_emulator --port 0`: serve until killed; the port is the first line."""

from __future__ import annotations

import argparse
import json

from hailuo_emulator.clip import warm
from hailuo_emulator.server import Server
from hailuo_emulator.state import DEFAULT_KEY


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hailuo_emulator")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--key", default=DEFAULT_KEY, help="the API key every provider expects")
    parser.add_argument("--config", default="{}", help="initial switches as JSON")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="serve HTTPS")
    args = parser.parse_args(argv)
    tls = tuple(args.tls) if args.tls else None
    server = Server(args.port, args.host, tls=tls, key=args.key, **json.loads(args.config))
    print(server.port, flush=True)
    warm()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
