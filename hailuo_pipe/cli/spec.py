"""Commands about the storyboard language itself: validate, schema, providers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from hailuo_pipe.cli.common import (
    PROVIDER_NAMES,
    echo_json,
    json_option,
    parse_vars,
    reports_errors,
    spec_options,
)
from hailuo_pipe.cli.defaults import ConfiguredCommand


@click.command(cls=ConfiguredCommand)
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@spec_options
@json_option
@reports_errors
def validate(
    specs: tuple[str, ...], variables: tuple[str, ...], provider: str | None, as_json: bool
) -> None:
    """Check storyboards completely, spending nothing: every problem with its file:line:col."""
    from pathlib import Path

    from hailuo_pipe.errors import SpecError
    from hailuo_pipe.validate import check

    overrides = parse_vars(variables)
    problems = []
    counts = {}
    for spec in specs:
        board, found = check(Path(spec), overrides=overrides, provider=provider, display=spec)
        problems += found
        if board is not None and not found:
            counts[spec] = len(board.scenes)
    if problems:
        raise SpecError(problems)
    if as_json:
        echo_json({"ok": True, "errors": [], "scenes": counts})
    else:
        for spec, n in counts.items():
            click.echo(f"{spec}: ok ({n} scene{'s' if n != 1 else ''})")


@click.command(cls=ConfiguredCommand)
def schema() -> None:
    """Print the storyboard JSON Schema (for editors' YAML language servers)."""
    from hailuo_pipe.storyboard.schemas import load_schema

    echo_json(load_schema("storyboard"))


def _provider_rows() -> list[Mapping[str, Any]]:
    from hailuo_pipe import providers
    from hailuo_pipe.storyboard.model import Scene

    rows: list[Mapping[str, Any]] = []
    for name in PROVIDER_NAMES:
        cls = providers.get(name)
        caps = cls.capabilities
        prices = {}
        for res, durations in caps.durations.items():
            for d in durations:
                probe = Scene(
                    id="x",
                    prompt="x",
                    provider=name,
                    duration=d,
                    resolution=res,
                    prompt_optimizer=False,
                )
                prices[f"{res}/{d}s"] = float(cls().price(probe))
        rows.append(
            {
                "name": name,
                "title": cls.title,
                "durations": dict(caps.durations),
                "end_image": caps.end_image,
                "local_images": caps.local_images,
                "prices": prices,
                "env": []
                if cls.local
                else [cls.key_variable(), cls.url_variable(), *cls.optional_variables],
                "base_url": cls.default_base_url,
            }
        )
    return rows


@click.command("providers", cls=ConfiguredCommand)
@json_option
def providers_cmd(as_json: bool) -> None:
    """List the providers: resolutions, durations, frames, prices and environment variables."""
    rows = _provider_rows()
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        click.echo(f"{r['name']}  ({r['title']})")
        for res, durations in r["durations"].items():
            cost = ", ".join(f"{d} s ${r['prices'][f'{res}/{d}s']:.2f}" for d in durations)
            click.echo(f"    {res:>5}: {cost}")
        frames = "first + last frame" if r["end_image"] else "first frame only"
        images = "files and URLs" if r["local_images"] else "image URLs only"
        click.echo(f"    frames: {frames}; images: {images}")
        if r["env"]:
            click.echo(f"    env: {', '.join(r['env'])}")


@click.command(cls=ConfiguredCommand)
@click.argument("path", default="storyboard.yaml", type=click.Path(dir_okay=True))
@reports_errors
def init(path: str) -> None:
    """Write a commented starter storyboard (offline, free: the preview provider) and the
    .gitignore entries for renders; never overwrites a file."""
    from pathlib import Path

    from hailuo_pipe.starter import init as start

    started = start(Path(path))
    click.echo(f"wrote {started.storyboard}")
    if started.ignore_added:
        click.echo(f"added {', '.join(started.ignore_added)} to {started.gitignore}")
    click.echo(f"next: hailuo-pipe validate {started.storyboard}, then plan, then render")
