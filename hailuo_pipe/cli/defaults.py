"""Where an option's value comes from when the command line does not give it.

Precedence, highest first: the command line; the environment; the nearest `pyproject.toml`'s
`[tool.hailuo-pipe]` table; the built-in default. Click does the ranking (command line,
`envvar`, `default_map`, default); this module names the variables and reads the table.

Environment: click's `auto_envvar_prefix` convention, `HAILUO_PIPE_<COMMAND>_<OPTION>` with the
command path and the option's long name in upper case, dashes as underscores
(`HAILUO_PIPE_RENDER_CONCURRENCY`, `HAILUO_PIPE_RENDER_PER_PROVIDER`,
`HAILUO_PIPE_CACHE_GC_DRY_RUN`), and, for the options every storyboard command shares, a short
form without the command: `HAILUO_PIPE_PROVIDER`, `HAILUO_PIPE_VAR` (the longer name wins).
Flags take 1/0, true/false, yes/no; repeatable options take values separated by spaces.
`--force`, `--resubmit` and `--adopt` come from the command line only: as standing defaults they
would pay for a scene again on every render.

pyproject.toml, found beside the (first) storyboard named on the command line or in a folder
above it, else from the current folder up; the nearest one with a `[tool.hailuo-pipe]` table
wins:

    [tool.hailuo-pipe]
    provider = "preview"        # every command that has --provider
    var = {city = "Oslo"}       # or ["city=Oslo"]
    [tool.hailuo-pipe.render]   # one command (a group's: [tool.hailuo-pipe.cache.gc])
    concurrency = 8
    per-provider = 2
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from pathlib import Path

PREFIX = "HAILUO_PIPE"
SHARED = ("provider", "var")  # options with a short, command-less variable too
TABLE = "hailuo-pipe"
# options that spend or take a job for one scene, once: as a standing default they would pay
# for a scene again on every render, so they come from the command line only
ONE_SHOT = ("force", "resubmit", "adopt")


def option_name(option: click.Option) -> str:
    """An option's long name without its dashes: `per-provider`, `json`."""
    longs = [o for o in option.opts if o.startswith("--")]
    return (longs[0] if longs else option.opts[0]).lstrip("-")


def variable(path: tuple[str, ...], name: str) -> str:
    return "_".join((PREFIX, *path, name)).upper().replace("-", "_")


def walk(
    group: click.Group, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from walk(command, (*path, name))


def name_variables(group: click.Group) -> None:
    """Give every option of every command its environment variables (shown in --help)."""
    for path, command in walk(group):
        for param in command.params:
            if isinstance(param, click.Option) and param.envvar is None and param.name != "help":
                name = option_name(param)
                param.allow_from_autoenv = False  # no second, hidden name by the python name
                if name in ONE_SHOT:
                    continue
                names = [variable(path, name)]
                if name in SHARED:
                    names.append(variable((), name))
                param.envvar = names
                param.show_envvar = True


class ConfiguredCommand(click.Command):
    """A command whose defaults come from the nearest pyproject.toml's [tool.hailuo-pipe]."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        asks_help = any(a in ("--help", "-h") for a in args)  # help needs no defaults
        if ctx.default_map is None and not ctx.resilient_parsing and not asks_help:
            found = find_table(_start(self, ctx, args))
            if found is not None:
                ctx.default_map = defaults_for(self, _path(ctx), *found)
        return super().parse_args(ctx, args)


class ConfiguredGroup(click.Group):
    command_class = ConfiguredCommand


def _path(ctx: click.Context) -> tuple[str, ...]:
    parts = []
    while ctx.parent is not None:  # the root is `hailuo-pipe` itself
        parts.append(ctx.info_name or "")
        ctx = ctx.parent
    return tuple(reversed(parts))


def _start(command: click.Command, ctx: click.Context, args: list[str]) -> Path:
    """The folder to look from: the storyboard's, when the command line names one."""
    from pathlib import Path  # here, not at the top: `--help` needs none of it

    try:
        opts, _, _ = command.make_parser(ctx).parse_args(args=list(args))
    except click.UsageError:
        opts = {}  # reported by the real parse, after this
    for key in ("spec", "specs"):
        value = opts.get(key)
        first = value[0] if isinstance(value, list | tuple) and value else value
        if isinstance(first, str) and first:
            return Path(first).absolute().parent
    return Path.cwd()


def find_table(start: Path) -> tuple[Path, Mapping[str, Any]] | None:
    """The nearest pyproject.toml at or above `start` with a [tool.hailuo-pipe] table."""
    import tomllib

    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if not candidate.is_file():
            continue
        try:
            data = tomllib.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
            raise click.UsageError(f"{candidate}: cannot read it ({err})") from None
        table = data.get("tool", {}).get(TABLE)
        if isinstance(table, dict):
            return candidate, table
    return None


def defaults_for(
    command: click.Command, path: tuple[str, ...], file: Path, table: Mapping[str, Any]
) -> dict[str, Any]:
    """The default_map of one command: the table's top-level keys that name one of its
    options, then its own table's keys (which must all name one)."""
    options = {
        spelling: param
        for param in command.params
        if isinstance(param, click.Option) and param.name != "help"
        for spelling in (option_name(param), option_name(param).replace("-", "_"))
    }
    out: dict[str, Any] = {}
    own: Any = table
    for part in path:
        own = own.get(part) if isinstance(own, Mapping) else None
    scopes = (("", table), (".".join(path), own if isinstance(own, Mapping) else {}))
    for scope, values in scopes:
        for key, value in values.items():
            if isinstance(value, Mapping) and key != "var":
                continue  # a command's own table
            param = options.get(key)
            if param is None:
                if scope:
                    raise click.UsageError(
                        f"{file}: [tool.{TABLE}.{scope}] sets {key!r}, which is not an option "
                        f"of '{' '.join(path)}'"
                    )
                continue  # a top-level key for other commands
            if option_name(param) in ONE_SHOT:
                raise click.UsageError(
                    f"{file}: {key!r} cannot be a default (it would pay for the scene again on "
                    f"every run); give --{key} on the command line"
                )
            assert param.name is not None
            out[param.name] = _value(param, value, file, key)
    return out


def _value(param: click.Option, value: Any, file: Path, key: str) -> Any:
    if option_name(param) == "var" and isinstance(value, Mapping):
        return [f"{k}={v}" for k, v in value.items()]
    if param.multiple and not isinstance(value, list):
        return [value]
    if isinstance(value, list | dict) and not param.multiple:
        raise click.UsageError(f"{file}: {key!r} takes one value, not {value!r}")
    return value


def environment_names(group: click.Group) -> list[tuple[str, str]]:
    """(variable, option) for every option: what README documents."""
    rows = []
    for path, command in walk(group):
        for param in command.params:
            if isinstance(param, click.Option) and isinstance(param.envvar, list):
                rows.append((", ".join(param.envvar), f"{' '.join(path)} --{option_name(param)}"))
    return rows

