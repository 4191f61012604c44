"""hailuo-pipe: storyboards as code for the MiniMax Hailuo 02 video model.

The library in three calls (the CLI is a thin layer over them)::

    from hailuo_pipe import Lockfile, RenderOptions, load_storyboard, make_plan
    from hailuo_pipe.render import render

    board = load_storyboard(Path("specs/trailer.yaml"))   # SpecError: every problem, located
    plan = make_plan(board, Lockfile.load(board.lock_path, board.name))   # sends nothing
    result = render(board, RenderOptions(on_event=print))   # plans again under the lock

(`render` is not re-exported here: `hailuo_pipe.render` is its package.) Names load on first
use, so `import hailuo_pipe` (and `hailuo-pipe --help`) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "load_storyboard": "hailuo_pipe.validate",
    "make_plan": "hailuo_pipe.plan",
    "decide": "hailuo_pipe.plan",
    "Plan": "hailuo_pipe.plan",
    "Step": "hailuo_pipe.plan",
    "SavedPlan": "hailuo_pipe.plan.saved",
    "Lockfile": "hailuo_pipe.state.lockfile",
    "RenderOptions": "hailuo_pipe.render",
    "RenderResult": "hailuo_pipe.render",
    "Event": "hailuo_pipe.render",
    "Storyboard": "hailuo_pipe.storyboard.model",
    "Scene": "hailuo_pipe.storyboard.model",
    "errors": "hailuo_pipe.errors",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'hailuo_pipe' has no attribute {name!r}")
    if name == "errors":
        return importlib.import_module(module)
    return getattr(importlib.import_module(module), name)
