"""Commands that look at a storyboard's renders: status, cut, report."""

from __future__ import annotations

import sys

import click

from hailuo_pipe.cli import common
from hailuo_pipe.cli.common import json_option, reports_errors, scrub, spec_options
from hailuo_pipe.cli.defaults import ConfiguredCommand


@click.command(cls=ConfiguredCommand)
@click.argument("spec", type=click.Path(dir_okay=False))
@spec_options
@json_option
@reports_errors
def status(spec: str, variables: tuple[str, ...], provider: str | None, as_json: bool) -> None:
    """Exit 0 when every scene is up to date, 1 otherwise (for make and CI)."""
    from hailuo_pipe.plan import make_plan
    from hailuo_pipe.state.lockfile import Lockfile

    board = common.load_spec(spec, variables, provider)
    lock = Lockfile.load(board.lock_path, board.name)
    the_plan = make_plan(board, lock)
    if as_json:
        import json

        click.echo(
            json.dumps(
                {
                    "up_to_date": the_plan.up_to_date,
                    "scenes": [
                        {**s.to_json(), "state": s.entry.state if s.entry else None}
                        for s in the_plan.steps
                    ],
                },
                indent=2,
            )
        )
    else:
        for s in the_plan.steps:
            if s.action != "reuse":
                click.echo(f"{s.scene.id}: {s.action} ({scrub(s.reason)})")
        click.echo(
            f"{spec}: "
            + (
                "up to date"
                if the_plan.up_to_date
                else f"{sum(1 for s in the_plan.steps if s.action != 'reuse')} scene(s) out of date"
            )
        )
    if not the_plan.up_to_date:
        sys.exit(1)


@click.command(cls=ConfiguredCommand)
@click.argument("spec", type=click.Path(dir_okay=False))
@spec_options
@json_option
@reports_errors
def cut(spec: str, variables: tuple[str, ...], provider: str | None, as_json: bool) -> None:
    """Assemble the storyboard's output from its finished clips (reused when unchanged)."""
    from hailuo_pipe.cut import assemble
    from hailuo_pipe.state.lockfile import Lockfile, exclusive

    board = common.load_spec(spec, variables, provider)
    if board.output is None:
        raise click.UsageError(f"{spec} declares no output: add output: {{path, sequence}}")
    with exclusive(board.lock_path, wait=True):
        path = assemble(board, Lockfile.load(board.lock_path, board.name))
    if as_json:
        common.echo_json({"ok": True, "cut": str(board.path.parent / path)})
    else:
        click.echo(board.path.parent / path)


@click.command(cls=ConfiguredCommand)
@click.argument("spec", type=click.Path(dir_okay=False))
@spec_options
@click.option(
    "-o",
    "--output",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Folder for report.html and its thumbnails (default: the storyboard's render folder).",
)
@json_option
@reports_errors
def report(
    spec: str,
    variables: tuple[str, ...],
    provider: str | None,
    out_dir: str | None,
    as_json: bool,
) -> None:
    """Write a static HTML contact sheet of the storyboard (works from file://)."""
    from hailuo_pipe.plan import make_plan
    from hailuo_pipe.report import write_report
    from hailuo_pipe.state.lockfile import Lockfile

    board = common.load_spec(spec, variables, provider)
    lock = Lockfile.load(board.lock_path, board.name)
    from pathlib import Path

    where = Path(out_dir) if out_dir is not None else None
    page = write_report(board, lock, make_plan(board, lock), where)
    if as_json:
        import json

        click.echo(json.dumps({"ok": True, "report": str(page)}))
    else:
        click.echo(f"report: {page}")


@click.command(cls=ConfiguredCommand)
@click.argument("spec", type=click.Path(dir_okay=False))
@spec_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(("mermaid", "dot", "text")),
    default="text",
    show_default=True,
    help="mermaid (GitHub renders it), dot (Graphviz: | dot -Tsvg) or text.",
)
@reports_errors
def dag(spec: str, variables: tuple[str, ...], provider: str | None, fmt: str) -> None:
    """Draw the storyboard's graph: scenes, the frames they take from each other, the cut."""
    from hailuo_pipe.dag import dag_of, draw

    board = common.load_spec(spec, variables, provider)
    click.echo(draw(dag_of(board), fmt), nl=False)
