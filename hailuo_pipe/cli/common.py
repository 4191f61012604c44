"""What every command shares: the spec options, `--json`, error reporting, loading a spec.

This module and the command modules import nothing heavy at import time (no asyncio, jinja2,
PIL, yaml or httpx): `--help` and `--version` load only click. Each command imports the library
it calls inside its body.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from functools import wraps
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

if TYPE_CHECKING:
    from hailuo_pipe.storyboard.model import Storyboard

F = TypeVar("F", bound=Callable[..., Any])

# The names of hailuo_pipe.providers.PROVIDER_NAMES, copied so that `--help` need not import
# the providers (their base module loads the storyboard model and more); a test keeps the two
# equal.
PROVIDER_NAMES = (
    "preview", "wavespeed", "gmicloud", "minimax", "runware", "apiframe", "fal", "replicate"
)


def parse_vars(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--var")
        out[name] = value
    return out


def spec_options(f: F) -> F:
    f = click.option(
        "--var",
        "variables",
        multiple=True,
        metavar="NAME=VALUE",
        help="Override a template variable (repeatable).",
    )(f)
    f = click.option(
        "--provider",
        type=click.Choice(PROVIDER_NAMES),
        help="Render every scene with this provider (e.g. preview).",
    )(f)
    return f


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(f)


def scrub(text: str) -> str:
    """Text about to be shown: any API key or cache credential masked, control characters of
    outside text (job ids, provider messages) escaped."""
    from hailuo_pipe.redact import shown

    return shown(text, newlines=True)


def echo_shown(text: str) -> None:
    """Echo JSON built from outside text: json.dumps escapes control characters, this masks
    any secret in whatever form it took."""
    click.echo(scrub(text))


def echo_json(data: Mapping[str, Any] | list[Any]) -> None:
    import json

    click.echo(json.dumps(data, indent=2))


def reports_errors(f: F) -> F:
    """Turn the library's errors into a message and exit code 1, never a traceback."""

    @wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # imported when a command runs, not when `--help` lists it
        import json

        from hailuo_pipe.errors import HailuoPipeError, SettingError, SpecError, UnknownName

        as_json = kwargs.get("as_json", False)
        try:
            return f(*args, **kwargs)
        except SpecError as err:
            if as_json:
                click.echo(
                    json.dumps(
                        {"ok": False, "errors": [p.to_json() for p in err.problems]}, indent=2
                    )
                )
            else:
                for problem in err.problems:
                    click.echo(scrub(str(problem)), err=True)
                n = len(err.problems)
                click.echo(f"{n} problem{'s' if n != 1 else ''} found", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            _interrupted()
        except UnknownName as err:  # a mistyped argument: a usage error, exit 2
            raise click.UsageError(scrub(str(err))) from None
        except HailuoPipeError as err:
            if as_json:
                click.echo(
                    json.dumps(
                        {"ok": False, "error": scrub(str(err)), "kind": type(err).__name__},
                        indent=2,
                    )
                )
            else:
                click.echo(f"error: {scrub(str(err))}", err=True)
            sys.exit(2 if isinstance(err, SettingError) else 1)  # a bad setting: usage error
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # click's own: usage errors and exits, reported by click
        except Exception as err:
            if _caused_by_interrupt(err):  # Python 3.11 wraps one raised in __set_name__
                _interrupted()
            # a bug of ours: still one line and exit 1, not a traceback; every lockfile write is
            # atomic, so what was recorded stays recorded. HAILUO_PIPE_DEBUG=1 shows where.
            if os.environ.get("HAILUO_PIPE_DEBUG"):
                raise
            text = scrub(f"{type(err).__name__}: {err}")
            click.echo(
                f"error: internal error ({text}); recorded jobs stay in the lockfile: run the "
                "same command again, and please report this (HAILUO_PIPE_DEBUG=1 shows where)",
                err=True,
            )
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def _interrupted() -> NoReturn:
    # Ctrl-C before a render started or after it ended: the lockfile is consistent either
    # way, and an interrupt is exit 130 as documented, never click's exit 1
    click.echo(
        "\nInterrupted. Run the same command again: recorded jobs are resumed, "
        "nothing is submitted twice.",
        err=True,
    )
    sys.exit(130)


def _caused_by_interrupt(err: BaseException) -> bool:
    """A Ctrl-C that arrived while a module was being imported can come wrapped."""
    seen: BaseException | None = err
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def load_spec(spec: str, variables: tuple[str, ...], provider: str | None) -> Storyboard:
    """The storyboard a command works on. Commands call it as `common.load_spec`, so a test
    can replace it here."""
    from pathlib import Path

    from hailuo_pipe.validate import load_storyboard

    return load_storyboard(
        Path(spec), overrides=parse_vars(variables), provider=provider, display=spec
    )


def scene_ids(board: Storyboard, ids: tuple[str, ...], option: str) -> set[str]:
    known = [s.id for s in board.scenes]
    unknown = [i for i in ids if i not in set(known)]
    if unknown:
        from hailuo_pipe.validate import did_you_mean

        raise click.BadParameter(
            f"no scene {', '.join(map(repr, unknown))} in {board.path.name}"
            + did_you_mean(unknown[0], known),
            param_hint=option,
        )
    return set(ids)


def complete_scenes(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[Any]:
    """Shell completion of scene ids from the storyboard named on the command line so far
    (with its --var and --provider, so foreach ids come out as a render would make them).
    `--adopt` completes `ID=`. A missing or broken storyboard completes nothing: a traceback
    would land in the user's shell."""
    from click.shell_completion import CompletionItem

    # an option still waiting for its value stops click's parse before the arguments, which
    # are then left in ctx.args
    spec = ctx.params.get("spec") or next((a for a in ctx.args if not a.startswith("-")), None)
    if not isinstance(spec, str) or not spec:
        return []
    try:
        variables = tuple(ctx.params.get("variables") or ())
        board = load_spec(spec, variables, ctx.params.get("provider"))
    except Exception:  # a spec being written: its problems are validate's to report
        return []
    suffix = "=" if param.name == "adopt" else ""
    return [
        CompletionItem(f"{s.id}{suffix}", help=s.provider)
        for s in board.scenes
        if s.id.startswith(incomplete)
    ]
