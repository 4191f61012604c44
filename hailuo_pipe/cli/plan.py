"""`plan`: what a render would do, why, and what it would cost; and how a plan is printed."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from hailuo_pipe.cli import common
from hailuo_pipe.cli.common import json_option, parse_vars, reports_errors, scrub, spec_options
from hailuo_pipe.cli.defaults import ConfiguredCommand

if TYPE_CHECKING:
    from hailuo_pipe.plan import Plan

SYMBOLS = {
    "reuse": "=",
    "create": "+",
    "replace": "~",
    "retry": "+",
    "poll": ">",
    "resend": ">",
    "download": "<",
    "pull": "<",
    "restore": "<",
    "reconcile": "?",
    "blocked": "!",
}


def print_plan(plan: Plan) -> None:
    width = max((len(s.scene.id) for s in plan.steps), default=5)
    for s in plan.steps:
        sc = s.scene
        price = f"${s.price:.2f}" if s.price else "    -"
        click.echo(
            f"  {SYMBOLS[s.action]} {sc.id:<{width}}  {s.action:<9} {sc.provider:<9} "
            f"{sc.resolution:>5} {sc.duration:>2}s  {price:>6}  {scrub(s.reason)}"
        )
    parts = [
        f"{plan.count(a)} to {a}"
        for a in ("create", "replace", "retry", "poll", "resend", "download", "pull", "restore")
        if plan.count(a)
    ]
    if plan.count("reconcile"):
        parts.append(f"{plan.count('reconcile')} to look for at the provider")
    if plan.count("blocked"):
        parts.append(f"{plan.count('blocked')} blocked")
    summary = ", ".join(parts) or "nothing to do"
    click.echo(
        f"\nPlan: {summary}; {plan.count('reuse')} up to date. Cost of this run: ${plan.cost:.2f}"
    )


@click.command(cls=ConfiguredCommand)
@click.argument("spec", type=click.Path(dir_okay=False))
@spec_options
@click.option(
    "--force",
    multiple=True,
    metavar="SCENE",
    shell_complete=common.complete_scenes,
    help="Plan this scene again.",
)
@click.option(
    "--scene",
    "scenes",
    multiple=True,
    metavar="ID",
    shell_complete=common.complete_scenes,
    help="Plan only this scene and its needs.",
)
@click.option(
    "--resubmit",
    multiple=True,
    metavar="ID",
    shell_complete=common.complete_scenes,
    help="Plan to submit anew a scene parked unknown.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="Save the plan to FILE, for review; 'render --plan FILE' applies exactly it.",
)
@json_option
@reports_errors
def plan(
    spec: str,
    variables: tuple[str, ...],
    provider: str | None,
    force: tuple[str, ...],
    scenes: tuple[str, ...],
    resubmit: tuple[str, ...],
    out: str | None,
    as_json: bool,
) -> None:
    """Show what a render would do, why, and what it would cost. Nothing is sent."""
    from pathlib import Path

    from hailuo_pipe import plan as planning
    from hailuo_pipe.plan.saved import PlanOptions, SavedPlan
    from hailuo_pipe.render.shared import open_for
    from hailuo_pipe.state.lockfile import Lockfile

    board = common.load_spec(spec, variables, provider)
    options = PlanOptions(
        variables=parse_vars(variables),
        provider=provider,
        force=tuple(sorted(common.scene_ids(board, force, "--force"))),
        resubmit=tuple(sorted(common.scene_ids(board, resubmit, "--resubmit"))),
        only=tuple(sorted(common.scene_ids(board, scenes, "--scene"))) if scenes else None,
    )
    lock = Lockfile.load(board.lock_path, board.name)
    # scenes in the shared cache are shown as `fetch` at $0, as render will do them
    the_plan = planning.make_plan(
        board,
        lock,
        force=set(options.force),
        resubmit=set(options.resubmit),
        only=options.only,
        cache=open_for(board, os.environ),
    )
    if out is not None:
        saved = SavedPlan.of(
            the_plan, name=board.name, spec=board.path, lockfile=board.lock_path, options=options
        )
        saved.write(Path(out))
    if as_json:
        import json

        click.echo(
            json.dumps(
                {
                    "ok": True,
                    "cost": float(the_plan.cost),
                    "steps": [s.to_json() for s in the_plan.steps],
                },
                indent=2,
            )
        )
    else:
        click.echo(f"{spec} ({board.name}):")
        print_plan(the_plan)
        if out is not None:
            click.echo(f"Saved the plan to {out}; apply exactly it with: "
                       f"hailuo-pipe render {spec} --plan {out}")
