"""What a caller can ask of a render."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from hailuo_pipe.providers.base import REQUEST_TIMEOUT
from hailuo_pipe.render.events import Event

if TYPE_CHECKING:
    from hailuo_pipe.plan import Plan
    from hailuo_pipe.plan.saved import SavedPlan


@dataclass
class RenderOptions:
    concurrency: int = 4
    per_provider: int | None = None
    force: Collection[str] = ()
    resubmit: Collection[str] = ()
    adopt: Mapping[str, str] = field(default_factory=dict)  # scene -> job found at its provider
    only: Collection[str] | None = None
    max_cost: Decimal | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    on_event: Callable[[Event], None] = lambda event: None
    http_timeout: float = REQUEST_TIMEOUT
    wait: bool = False  # queue behind another render of the same spec instead of refusing
    tick: float | None = None  # emit "tick" events this often, for live elapsed times
    on_plan: Callable[[Plan], None] = lambda plan: None  # shown before anything is sent
    saved_plan: SavedPlan | None = None  # the reviewed plan this render must match exactly
