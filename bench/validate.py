"""Time `validate` and `plan` on a generated 1,000-scene storyboard (target: each under 1 s).

    .venv/bin/python bench/validate.py [--scenes 1000]

Scenes have templated prompts, a mix of providers, and chains of ten (each scene's first frame
is the last frame of the one before), so the graph, the templates, every provider's schema and
the image checks are all exercised.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from PIL import Image

from hailuo_pipe.plan import make_plan
from hailuo_pipe.state.lockfile import Lockfile
from hailuo_pipe.validate import check

PROVIDERS = ["wavespeed", "minimax", "runware", "gmicloud", "preview"]


def storyboard(n: int) -> str:
    lines = [
        "version: 1",
        "name: bench",
        "vars:",
        "  city: Ice Harbor",
        "  look: natural cold light, premium trailer grade",
        "defaults:",
        "  provider: wavespeed",
        "  duration: 6",
        "scenes:",
    ]
    for i in range(n):
        lines += [
            f"  - id: s{i:04d}",
            f'    prompt: "[Tracking shot] Shot {i} over {{{{ city }}}}, {{{{ look }}}}."',
            f"    provider: {PROVIDERS[i % len(PROVIDERS)]}",
        ]
        if i % 10 == 0:
            lines.append("    image: assets/first.png")
        else:
            lines.append(f"    image: {{from: s{i - 1:04d}, frame: last}}")
    return "\n".join(lines) + "\n"


def best_of(runs: int, fn) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    best, result = float("inf"), None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenes", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "assets").mkdir()
        Image.new("RGB", (1280, 720), (40, 60, 110)).save(root / "assets" / "first.png")
        spec = root / "bench.yaml"
        spec.write_text(storyboard(args.scenes))

        first_start = time.perf_counter()
        board, problems = check(spec)
        first = time.perf_counter() - first_start
        assert not problems and board is not None, problems[:5]
        t_validate, _ = best_of(3, lambda: check(spec))
        lock = Lockfile.load(board.lock_path, board.name)
        t_plan, plan = best_of(3, lambda: make_plan(board, lock))
        print(f"scenes: {args.scenes}, spec {spec.stat().st_size / 1024:.0f} KiB")
        print(
            f"validate: {t_validate * 1000:.0f} ms (best of 3; first run in a fresh "
            f"process {first * 1000:.0f} ms)"
        )
        print(f"plan:     {t_plan * 1000:.0f} ms (best of 3), cost ${plan.cost:.2f}")  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
