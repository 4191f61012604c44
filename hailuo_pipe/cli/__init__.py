"""The `hailuo-pipe` command: a thin layer over the library, one module per command group.

Each command parses its arguments, calls one library function and reports what it did:
`spec` (init, validate, schema, providers), `plan`, `render`, `inspect` (status, cut, report, dag),
`cache` (the shared result cache); `common` holds what they share, `defaults` where options
come from when not typed (environment, pyproject.toml), `progress` the live display.
Nothing heavy loads before a command runs, so `--help` and `--version` start fast.

Exit codes: 0 ok, 1 the spec or the run failed (or, for `status`, something is out of date),
2 a usage error, 130 interrupted. A user's own mistake never shows a traceback.
"""

from __future__ import annotations

import click

from hailuo_pipe import __version__
from hailuo_pipe.cli import cache, inspect, plan, render, spec
from hailuo_pipe.cli.defaults import PREFIX, name_variables


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": PREFIX}
)
@click.version_option(__version__, prog_name="hailuo-pipe")
def main() -> None:
    """Render Hailuo 02 storyboards: validate, plan, render, status, report."""


for command in (
    spec.init,
    spec.validate,
    spec.schema,
    spec.providers_cmd,
    plan.plan,
    render.render,
    inspect.status,
    inspect.cut,
    inspect.report,
    inspect.dag,
    cache.cache_group,
):
    main.add_command(command)
name_variables(main)  # HAILUO_PIPE_<COMMAND>_<OPTION>, and HAILUO_PIPE_PROVIDER / _VAR
