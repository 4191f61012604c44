"""`render`: run what is out of date, showing it as it happens, and report how it went."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from hailuo_pipe.cli import common
from hailuo_pipe.cli.common import echo_shown, json_option, reports_errors, scrub, spec_options
from hailuo_pipe.cli.defaults import ConfiguredCommand
from hailuo_pipe.cli.plan import print_plan

if TYPE_CHECKING:
    from hailuo_pipe.plan import Plan
    from hailuo_pipe.storyboard.model import Storyboard


def _adoptions(board: Storyboard, pairs: tuple[str, ...]) -> dict[str, str]:
    jobs = {}
    for pair in pairs:
        scene_id, sep, job_id = pair.partition("=")
        if not sep or not job_id:
            raise click.BadParameter(f"{pair!r} is not ID=JOB", param_hint="--adopt")
        jobs[scene_id] = job_id
    common.scene_ids(board, tuple(jobs), "--adopt")
    return jobs


@click.command(cls=ConfiguredCommand)
@click.argument("spec", type=click.Path(dir_okay=False))
@spec_options
@click.option(
    "-j",
    "--concurrency",
    type=click.IntRange(1, 256),
    default=4,
    show_default=True,
    help="Scenes rendered at once.",
)
@click.option(
    "--per-provider",
    type=click.IntRange(1, 256),
    help="At most this many at once on any one provider.",
)
@click.option(
    "--scene",
    "scenes",
    multiple=True,
    metavar="ID",
    shell_complete=common.complete_scenes,
    help="Render only this scene and what it needs (repeatable).",
)
@click.option(
    "--force",
    multiple=True,
    metavar="ID",
    shell_complete=common.complete_scenes,
    help="Render this scene again even when up to date (repeatable).",
)
@click.option(
    "--resubmit",
    multiple=True,
    metavar="ID",
    shell_complete=common.complete_scenes,
    help="Submit again a scene whose "
    "earlier submission's fate is unknown (you checked the provider).",
)
@click.option(
    "--adopt",
    multiple=True,
    metavar="ID=JOB",
    shell_complete=common.complete_scenes,
    help="Wait for job JOB, found at the provider, for a scene whose "
    "submission's fate is unknown, instead of paying again (repeatable).",
)
@click.option(
    "--max-cost",
    type=click.FloatRange(min=0),
    metavar="USD",
    help="Refuse a run whose new submissions would cost more than this.",
)
@click.option(
    "--wait", is_flag=True, help="Wait for another render of this spec to finish (for make -j)."
)
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(dir_okay=False),
    help="Apply exactly this saved plan (from plan --out), or refuse it if it is stale.",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the summary and errors.")
@json_option
@reports_errors
def render(
    spec: str,
    variables: tuple[str, ...],
    provider: str | None,
    concurrency: int,
    per_provider: int | None,
    scenes: tuple[str, ...],
    force: tuple[str, ...],
    resubmit: tuple[str, ...],
    adopt: tuple[str, ...],
    max_cost: float | None,
    wait: bool,
    plan_file: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Render what is out of date; resume what was submitted; never pay twice."""
    from decimal import Decimal

    from hailuo_pipe.cli.progress import LiveTable, LogLines, Progress
    from hailuo_pipe.cli.progress import quiet as silent
    from hailuo_pipe.errors import LockHeldError
    from hailuo_pipe.render import RenderOptions
    from hailuo_pipe.render import render as run_render

    saved = None
    if plan_file is not None:
        from hailuo_pipe.plan.saved import SavedPlan

        # only what was typed: a default from the environment or pyproject.toml gives way to
        # the saved plan's own options
        ctx = click.get_current_context()
        typed = click.core.ParameterSource.COMMANDLINE
        given = [
            name
            for name, param, value in (
                ("--var", "variables", variables),
                ("--provider", "provider", provider),
                ("--scene", "scenes", scenes),
                ("--force", "force", force),
                ("--resubmit", "resubmit", resubmit),
                ("--adopt", "adopt", adopt),
            )
            if value and ctx.get_parameter_source(param) == typed
        ]
        if given:
            raise click.UsageError(
                f"{', '.join(given)} cannot go with --plan: the saved plan fixes what it "
                "renders; make a new plan with them instead"
            )
        from pathlib import Path

        saved = SavedPlan.read(Path(plan_file))
        variables = tuple(f"{k}={v}" for k, v in saved.options.variables.items())
        provider = saved.options.provider
        force, resubmit = tuple(saved.options.force), tuple(saved.options.resubmit)
        scenes = tuple(saved.options.only or ())
    board = common.load_spec(spec, variables, provider)
    only = common.scene_ids(board, scenes, "--scene") if scenes else None
    live = not (quiet or as_json) and sys.stderr.isatty()
    counts = Progress(concurrency=concurrency)
    display = None if quiet or as_json else LiveTable(counts) if live else LogLines(counts)

    def show(the_plan: Plan) -> None:
        if display is not None:
            print_plan(the_plan)
            click.echo("")
            display.on_plan(the_plan)

    options = RenderOptions(
        concurrency=concurrency,
        per_provider=per_provider,
        only=only,
        force=common.scene_ids(board, force, "--force"),
        resubmit=common.scene_ids(board, resubmit, "--resubmit"),
        adopt=_adoptions(board, adopt),
        max_cost=Decimal(str(max_cost)) if max_cost is not None else None,
        on_event=display or silent,
        tick=1.0 if display else None,  # elapsed times redrawn, and the log's heartbeat
        wait=wait,
        on_plan=show,
        saved_plan=saved,
    )
    try:
        try:
            result = run_render(board, options)
        finally:
            if display is not None:
                display.close()  # the live table gives way to the summary
    except LockHeldError as err:
        # said once, before any plan is shown (the plan is made under the lock), with the way
        # to queue instead of failing
        raise LockHeldError(f"{err}, or run with --wait to queue behind it") from None
    except KeyboardInterrupt:
        click.echo(
            f"\nInterrupted. Submitted jobs are recorded in {board.lock_path.name}; run "
            f"'hailuo-pipe render {spec}' again to resume them (nothing is submitted "
            "twice).",
            err=True,
        )
        sys.exit(130)
    _report_render(result, board, spec, as_json)


def _failure(result: Any) -> str:
    """`SCENE: what happened (job ID); what to do`: the scene once, and its job whenever one
    exists, so the user can find it at the provider."""
    text = result.error or result.outcome
    if not text.startswith(f"{result.scene}: "):
        text = f"{result.scene}: {text}"
    if result.job_id and result.job_id not in text:
        text += f" (job {result.job_id})"
    if result.hint:
        text += f"; {result.hint}"
    return str(text)


def _report_render(result: Any, board: Storyboard, spec: str, as_json: bool) -> None:
    from hailuo_pipe.render import summary_line

    if as_json:
        import json

        echo_shown(
            json.dumps(
                {
                    "ok": not result.failed and not result.interrupted,
                    "interrupted": result.interrupted,
                    "spent": result.spent,
                    "planned": result.planned,
                    "in_flight": result.in_flight,
                    "cut": result.cut,
                    "cut_skipped": result.cut_skipped,
                    "scenes": [r.__dict__ for r in result.results],
                },
                indent=2,
            )
        )
    else:
        for r in result.failed:
            click.echo(f"error: {scrub(_failure(r))}", err=True)
        for r in result.results:
            if r.outcome == "interrupted" and r.hint:
                click.echo(f"{r.scene}: interrupted; {r.hint}", err=True)
        if result.cut_skipped:
            click.echo(result.cut_skipped, err=True)
        click.echo(f"{spec}: {summary_line(result)}")
        if result.cut:
            click.echo(f"cut: {board.path.parent / result.cut}")
    if result.interrupted:
        click.echo(
            f"Interrupted: jobs already submitted are recorded in {board.lock_path.name}; "
            f"run 'hailuo-pipe render {spec}' again to resume them (nothing is "
            "submitted twice).",
            err=True,
        )
        sys.exit(130)
    if result.failed:
        sys.exit(1)
