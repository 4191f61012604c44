"""Rendering a storyboard: lock the spec, load its lockfile, plan, then apply exactly that plan.

`render()` is the whole of it; `run.py` schedules the plan's steps, `scene.py` walks one
scene through its step (every lockfile write a named transition), `polling.py` says when to
ask a provider again, `download.py` fetches a finished clip, `shared.py` is the render's face of
the shared result cache, and `events.py` what a render reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from hailuo_pipe import providers
from hailuo_pipe.errors import BudgetExceeded, ConfigError, StalePlan
from hailuo_pipe.plan import Plan, make_plan
from hailuo_pipe.providers.base import Provider
from hailuo_pipe.render import shared as sharing
from hailuo_pipe.render.events import Event, RenderResult, SceneResult, summary_line
from hailuo_pipe.render.options import RenderOptions
from hailuo_pipe.state.lockfile import Lockfile, exclusive
from hailuo_pipe.storyboard.model import Storyboard

__all__ = [
    "Event",
    "RenderOptions",
    "RenderResult",
    "SceneResult",
    "check_budget",
    "configure",
    "render",
    "summary_line",
]


def render(board: Storyboard, options: RenderOptions | None = None) -> RenderResult:
    """Render under the spec's lock; Ctrl-C or SIGTERM stops new submits, resumably.

    The plan is made once, under the lock, shown through `on_plan`, checked against the saved
    plan and the budget, and then is what runs: a chained scene alone is decided again, by
    the same `decide`, once the frames it takes exist."""
    from hailuo_pipe.render.run import apply

    opts = options or RenderOptions()
    if board.rehearsal:
        board.render_dir.mkdir(parents=True, exist_ok=True)
    ttl = sharing.lease_ttl(opts.environ)  # a bad setting is refused before the spec is locked
    with exclusive(board.lock_path, wait=opts.wait):
        lock = Lockfile.load(board.lock_path, board.name)
        if opts.adopt:
            lock.adopt(opts.adopt)
            lock.save()
        cache = sharing.open_for(board, opts.environ)
        plan = make_plan(
            board, lock, force=opts.force, resubmit=opts.resubmit, only=opts.only, cache=cache
        )
        if opts.saved_plan is not None:
            try:
                opts.saved_plan.check(
                    plan, name=board.name, spec=board.path, lockfile=board.lock_path
                )
            except StalePlan as err:
                raise StalePlan(
                    f"the saved plan is stale: {err}; nothing was submitted. Review a new "
                    "one (hailuo-pipe plan --out FILE)"
                ) from None
        opts.on_plan(plan)
        if opts.max_cost is None and board.budget is not None:  # --max-cost overrides it
            check_budget(plan, board.budget, "the storyboard's budget:")
        else:
            check_budget(plan, opts.max_cost)
        configured = configure(plan, opts.environ)
        shared = sharing.Shared(cache, ttl=ttl) if cache is not None else None
        return apply(board, lock, plan, configured, opts, shared)


def check_budget(plan: Plan, max_cost: Decimal | None, limit: str = "--max-cost") -> None:
    if max_cost is not None and plan.cost > max_cost:
        raise BudgetExceeded(
            f"this run would spend ${plan.cost:.2f} on new submissions, more "
            f"than {limit} ${max_cost:.2f}; nothing was submitted"
        )


def configure(plan: Plan, environ: Mapping[str, str]) -> dict[str, Provider]:
    """Providers for every scene that needs the network, or ConfigError before anything is sent."""
    configured: dict[str, Provider] = {}
    missing = []
    for step in plan.steps:
        name = step.scene.provider
        if name in configured or step.action == "reuse" or step.cached is not None:
            continue
        try:
            configured[name] = providers.get(name).from_env(environ)
        except ConfigError as err:
            missing.append(str(err))
    if missing:
        raise ConfigError("; ".join(dict.fromkeys(missing)) + " (nothing was submitted)")
    return configured
