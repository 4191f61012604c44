"""The `hailuo-pipe` command: a thin layer over the library.

Exit codes: 0 ok, 1 the spec or the run failed (or, for `status`, something is out of date),
2 a usage error. A user's own mistake never shows a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from hailuo_pipe import __version__, providers
from hailuo_pipe.errors import HailuoPipeError, SettingError, SpecError, UnknownName
from hailuo_pipe.plan import Plan, make_plan
from hailuo_pipe.redact import shown
from hailuo_pipe.state.lockfile import Lockfile
from hailuo_pipe.storyboard.model import Storyboard
from hailuo_pipe.storyboard.schemas import load_schema
from hailuo_pipe.validate import check, did_you_mean, load_storyboard

if TYPE_CHECKING:
    from hailuo_pipe.cache import Cache, LeaseHeld

F = TypeVar("F", bound=Callable[..., Any])

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


def _parse_vars(values: tuple[str, ...]) -> dict[str, str]:
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
        type=click.Choice(providers.PROVIDER_NAMES),
        help="Render every scene with this provider (e.g. preview).",
    )(f)
    return f


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(f)


def _scrub(text: str) -> str:
    """Text about to be shown: any API key or cache credential masked, control characters of
    outside text (job ids, provider messages) escaped."""
    return shown(text, newlines=True)


def echo_shown(text: str) -> None:
    """Echo JSON built from outside text: json.dumps escapes control characters, this masks
    any secret in whatever form it took."""
    click.echo(shown(text, newlines=True))


def reports_errors(f: F) -> F:
    """Turn the library's errors into a message and exit code 1, never a traceback."""

    @wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
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
                    click.echo(_scrub(str(problem)), err=True)
                n = len(err.problems)
                click.echo(f"{n} problem{'s' if n != 1 else ''} found", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            # Ctrl-C before a render started or after it ended: the lockfile is consistent
            # either way, and an interrupt is exit 130 as documented, never click's exit 1
            click.echo(
                "\nInterrupted. Run the same command again: recorded jobs are resumed, "
                "nothing is submitted twice.",
                err=True,
            )
            sys.exit(130)
        except UnknownName as err:  # a mistyped argument: a usage error, exit 2
            raise click.UsageError(_scrub(str(err))) from None
        except HailuoPipeError as err:
            if as_json:
                click.echo(
                    json.dumps(
                        {"ok": False, "error": _scrub(str(err)), "kind": type(err).__name__},
                        indent=2,
                    )
                )
            else:
                click.echo(f"error: {_scrub(str(err))}", err=True)
            sys.exit(2 if isinstance(err, SettingError) else 1)  # a bad setting: usage error
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # click's own: usage errors and exits, reported by click
        except Exception as err:
            # a bug of ours: still one line and exit 1, not a traceback; every lockfile write is
            # atomic, so what was recorded stays recorded. HAILUO_PIPE_DEBUG=1 shows where.
            if os.environ.get("HAILUO_PIPE_DEBUG"):
                raise
            text = _scrub(f"{type(err).__name__}: {err}")
            click.echo(
                f"error: internal error ({text}); recorded jobs stay in the lockfile: run the "
                "same command again, and please report this (HAILUO_PIPE_DEBUG=1 shows where)",
                err=True,
            )
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def _load(spec: str, variables: tuple[str, ...], provider: str | None) -> Storyboard:
    return load_storyboard(
        Path(spec), overrides=_parse_vars(variables), provider=provider, display=spec
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hailuo-pipe")
def main() -> None:
    """Render Hailuo 02 storyboards: validate, plan, render, status, report."""


@main.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@spec_options
@json_option
@reports_errors
def validate(
    specs: tuple[str, ...], variables: tuple[str, ...], provider: str | None, as_json: bool
) -> None:
    """Check storyboards completely, spending nothing: every problem with its file:line:col."""
    overrides = _parse_vars(variables)
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
        click.echo(json.dumps({"ok": True, "errors": [], "scenes": counts}, indent=2))
    else:
        for spec, n in counts.items():
            click.echo(f"{spec}: ok ({n} scene{'s' if n != 1 else ''})")


def _print_plan(plan: Plan, board: Storyboard) -> None:
    width = max((len(s.scene.id) for s in plan.steps), default=5)
    for s in plan.steps:
        sc = s.scene
        price = f"${s.price:.2f}" if s.price else "    -"
        click.echo(
            f"  {SYMBOLS[s.action]} {sc.id:<{width}}  {s.action:<9} {sc.provider:<9} "
            f"{sc.resolution:>5} {sc.duration:>2}s  {price:>6}  {_scrub(s.reason)}"
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


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@spec_options
@click.option("--force", multiple=True, metavar="SCENE", help="Plan this scene again.")
@click.option(
    "--scene", "scenes", multiple=True, metavar="ID", help="Plan only this scene and its needs."
)
@click.option(
    "--resubmit", multiple=True, metavar="ID", help="Plan to submit anew a scene parked unknown."
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
    from hailuo_pipe.plan.saved import PlanOptions, SavedPlan
    from hailuo_pipe.render.shared import open_for

    board = _load(spec, variables, provider)
    options = PlanOptions(
        variables=_parse_vars(variables),
        provider=provider,
        force=tuple(sorted(_scene_ids(board, force, "--force"))),
        resubmit=tuple(sorted(_scene_ids(board, resubmit, "--resubmit"))),
        only=tuple(sorted(_scene_ids(board, scenes, "--scene"))) if scenes else None,
    )
    lock = Lockfile.load(board.lock_path, board.name)
    # scenes in the shared cache are shown as `fetch` at $0, as render will do them
    the_plan = make_plan(
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
        _print_plan(the_plan, board)
        if out is not None:
            click.echo(f"Saved the plan to {out}; apply exactly it with: "
                       f"hailuo-pipe render {spec} --plan {out}")


@main.command()
def schema() -> None:
    """Print the storyboard JSON Schema (for editors' YAML language servers)."""
    click.echo(json.dumps(load_schema("storyboard"), indent=2))


def _provider_rows() -> list[Mapping[str, Any]]:
    from hailuo_pipe.storyboard.model import Scene

    rows: list[Mapping[str, Any]] = []
    for name in providers.PROVIDER_NAMES:
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


@main.command("providers")
@json_option
def providers_cmd(as_json: bool) -> None:
    """List the providers: resolutions, durations, frames, prices and environment variables."""
    rows = _provider_rows()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
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


def _scene_ids(board: Storyboard, ids: tuple[str, ...], option: str) -> set[str]:
    known = [s.id for s in board.scenes]
    unknown = [i for i in ids if i not in set(known)]
    if unknown:
        raise click.BadParameter(
            f"no scene {', '.join(map(repr, unknown))} in {board.path.name}"
            + did_you_mean(unknown[0], known),
            param_hint=option,
        )
    return set(ids)


def _adoptions(board: Storyboard, pairs: tuple[str, ...]) -> dict[str, str]:
    jobs = {}
    for pair in pairs:
        scene_id, sep, job_id = pair.partition("=")
        if not sep or not job_id:
            raise click.BadParameter(f"{pair!r} is not ID=JOB", param_hint="--adopt")
        jobs[scene_id] = job_id
    _scene_ids(board, tuple(jobs), "--adopt")
    return jobs


@main.command()
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
    help="Render only this scene and what it needs (repeatable).",
)
@click.option(
    "--force",
    multiple=True,
    metavar="ID",
    help="Render this scene again even when up to date (repeatable).",
)
@click.option(
    "--resubmit",
    multiple=True,
    metavar="ID",
    help="Submit again a scene whose "
    "earlier submission's fate is unknown (you checked the provider).",
)
@click.option(
    "--adopt",
    multiple=True,
    metavar="ID=JOB",
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

    from hailuo_pipe.cli.progress import LiveLines, LogLines
    from hailuo_pipe.cli.progress import quiet as silent
    from hailuo_pipe.render import RenderOptions
    from hailuo_pipe.render import render as run_render

    saved = None
    if plan_file is not None:
        from hailuo_pipe.plan.saved import SavedPlan

        given = [
            name
            for name, value in (
                ("--var", variables),
                ("--provider", provider),
                ("--scene", scenes),
                ("--force", force),
                ("--resubmit", resubmit),
                ("--adopt", adopt),
            )
            if value
        ]
        if given:
            raise click.UsageError(
                f"{', '.join(given)} cannot go with --plan: the saved plan fixes what it "
                "renders; make a new plan with them instead"
            )
        saved = SavedPlan.read(Path(plan_file))
        variables = tuple(f"{k}={v}" for k, v in saved.options.variables.items())
        provider = saved.options.provider
        force, resubmit = tuple(saved.options.force), tuple(saved.options.resubmit)
        scenes = tuple(saved.options.only or ())
    board = _load(spec, variables, provider)
    only = _scene_ids(board, scenes, "--scene") if scenes else None
    live = not (quiet or as_json) and sys.stderr.isatty()

    def show(the_plan: Plan) -> None:
        if not (quiet or as_json):
            _print_plan(the_plan, board)
            click.echo("")

    options = RenderOptions(
        concurrency=concurrency,
        per_provider=per_provider,
        only=only,
        force=_scene_ids(board, force, "--force"),
        resubmit=_scene_ids(board, resubmit, "--resubmit"),
        adopt=_adoptions(board, adopt),
        max_cost=Decimal(str(max_cost)) if max_cost is not None else None,
        on_event=silent if quiet or as_json else (LiveLines() if live else LogLines()),
        tick=1.0 if live else None,
        wait=wait,
        on_plan=show,
        saved_plan=saved,
    )
    try:
        result = run_render(board, options)
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
            click.echo(f"error: {_scrub(_failure(r))}", err=True)
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


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@spec_options
@json_option
@reports_errors
def status(spec: str, variables: tuple[str, ...], provider: str | None, as_json: bool) -> None:
    """Exit 0 when every scene is up to date, 1 otherwise (for make and CI)."""
    board = _load(spec, variables, provider)
    lock = Lockfile.load(board.lock_path, board.name)
    the_plan = make_plan(board, lock)
    if as_json:
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
                click.echo(f"{s.scene.id}: {s.action} ({_scrub(s.reason)})")
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


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@spec_options
@reports_errors
def cut(spec: str, variables: tuple[str, ...], provider: str | None) -> None:
    """Assemble the storyboard's output from its finished clips (reused when unchanged)."""
    from hailuo_pipe.cut import assemble
    from hailuo_pipe.state.lockfile import exclusive

    board = _load(spec, variables, provider)
    if board.output is None:
        raise click.UsageError(f"{spec} declares no output: add output: {{path, sequence}}")
    with exclusive(board.lock_path, wait=True):
        path = assemble(board, Lockfile.load(board.lock_path, board.name))
    click.echo(board.path.parent / path)


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@spec_options
@click.option(
    "-o",
    "--output",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for report.html and its thumbnails (default: the storyboard's render folder).",
)
@json_option
@reports_errors
def report(
    spec: str,
    variables: tuple[str, ...],
    provider: str | None,
    out_dir: Path | None,
    as_json: bool,
) -> None:
    """Write a static HTML contact sheet of the storyboard (works from file://)."""
    from hailuo_pipe.report import write_report

    board = _load(spec, variables, provider)
    lock = Lockfile.load(board.lock_path, board.name)
    page = write_report(board, lock, make_plan(board, lock), out_dir)
    if as_json:
        click.echo(json.dumps({"ok": True, "report": str(page)}))
    else:
        click.echo(f"report: {page}")


# -- the shared result cache -------------------------------------------------------------------


def cache_option(f: F) -> F:
    return click.option(
        "--cache",
        "cache_url",
        metavar="URL",
        help="s3://BUCKET/PREFIX or file:///PATH (default: $HAILUO_PIPE_CACHE, else the "
        "storyboard's cache:).",
    )(f)


def _boards(
    specs: tuple[str, ...], variables: tuple[str, ...], provider: str | None
) -> list[tuple[Storyboard, Lockfile]]:
    boards = [_load(spec, variables, provider) for spec in specs]
    return [(b, Lockfile.load(b.lock_path, b.name)) for b in boards]


def _open_cache(cache_url: str | None, boards: list[tuple[Storyboard, Lockfile]]) -> Cache:
    from hailuo_pipe.sync import open_url, resolve_url

    return open_url(resolve_url(cache_url, [b for b, _ in boards], os.environ), os.environ)


def _short(fingerprint: str) -> str:
    return fingerprint.removeprefix("sha256:")[:12]


def _lease_json(held: LeaseHeld) -> dict[str, Any]:
    import time

    from hailuo_pipe.state.lockfile import iso

    return {
        "fingerprint": held.fingerprint,
        "holder": held.holder,
        "since": iso(held.since),
        "expires": iso(held.expires),
        "expired": held.expires <= time.time(),
        "job_id": held.job_id,
        "provider": held.provider,
    }


def _lease_line(held: LeaseHeld) -> str:
    info = _lease_json(held)
    job = f", job {held.job_id}" if held.job_id else ""
    state = "expired" if info["expired"] else f"until {info['expires']}"
    line = f"  lease {_short(held.fingerprint)}  {held.holder} since {info['since']}{job} ({state})"
    return _scrub(line)  # holder and job id come from a shared cache others write


def _echo_json(data: Mapping[str, Any]) -> None:
    click.echo(json.dumps(data, indent=2))


@main.group("cache")
def cache_group() -> None:
    """The shared result cache: list, push, pull and clean up finished clips."""


@cache_group.command("ls")
@click.argument("spec", required=False, type=click.Path(dir_okay=False))
@cache_option
@spec_options
@json_option
@reports_errors
def cache_ls(
    spec: str | None,
    cache_url: str | None,
    variables: tuple[str, ...],
    provider: str | None,
    as_json: bool,
) -> None:
    """List the cache's entries and leases; with SPEC, mark the entries its scenes use."""
    from hailuo_pipe.sync import list_cache

    boards = _boards((spec,) if spec else (), variables, provider)
    cache = _open_cache(cache_url, boards)
    listed, leases = list_cache(cache, boards)
    if as_json:
        _echo_json(
            {
                "ok": True,
                "cache": cache.url,
                "entries": [item.to_json() for item in listed],
                "leases": [_lease_json(held) for held in leases],
            }
        )
        return
    click.echo(f"{cache.url}:")
    for item in listed:
        e = item.entry
        used = f"  used by {', '.join(item.scenes)}" if item.scenes else ""
        click.echo(
            f"  {'*' if item.scenes else ' '} {_short(e.fingerprint)}  {e.provider or '-':<9} "
            f"{item.size / 1e6:6.1f} MB  job {e.job_id or '-'}  pushed {e.pushed_at or '-'} "
            f"by {e.pushed_by or '-'}{used}"
        )
    for held in leases:
        click.echo(_lease_line(held))
    total = sum(item.size for item in listed) / 1e6
    summary = f"{len(listed)} entries, {total:.1f} MB; {len(leases)} leases"
    if spec:
        summary += f"; {sum(1 for i in listed if i.scenes)} used by {spec} (*)"
    click.echo(summary)


def _sync_lines(rows: list[tuple[str, Any]], as_json: bool, **extra: Any) -> None:
    """Print push/pull outcomes; exit 1 when any of them is an error."""
    if as_json:
        _echo_json(
            {
                "ok": not any(o.status == "error" for _, o in rows),
                **extra,
                "scenes": [
                    {
                        "spec": spec,
                        "scene": o.scene_id,
                        "fingerprint": o.fingerprint,
                        "status": o.status,
                        "detail": _scrub(o.detail),
                    }
                    for spec, o in rows
                ],
            }
        )
    else:
        for spec, o in rows:
            detail = f"  {_scrub(o.detail)}" if o.detail else ""
            click.echo(f"  {o.status:<8} {spec}:{o.scene_id}  {_short(o.fingerprint)}{detail}")
        counts: dict[str, int] = {}
        for _, o in rows:
            counts[o.status] = counts.get(o.status, 0) + 1
        click.echo(", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing to do")
    if any(o.status == "error" for _, o in rows):
        sys.exit(1)


@cache_group.command("push")
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@cache_option
@spec_options
@json_option
@reports_errors
def cache_push(
    specs: tuple[str, ...],
    cache_url: str | None,
    variables: tuple[str, ...],
    provider: str | None,
    as_json: bool,
) -> None:
    """Push every finished scene of the lockfiles that the cache does not have yet."""
    from hailuo_pipe.sync import push_boards

    boards = _boards(specs, variables, provider)
    cache = _open_cache(cache_url, boards)
    names = {id(b): spec for spec, (b, _) in zip(specs, boards, strict=True)}
    rows = [(names[id(b)], o) for b, o in push_boards(cache, boards)]
    if not as_json:
        click.echo(f"{cache.url}:")
    _sync_lines(rows, as_json, cache=cache.url)


@cache_group.command("pull")
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@cache_option
@spec_options
@json_option
@reports_errors
def cache_pull(
    specs: tuple[str, ...],
    cache_url: str | None,
    variables: tuple[str, ...],
    provider: str | None,
    as_json: bool,
) -> None:
    """Fetch every out-of-date scene the cache has into this working copy and record it in
    the lockfile. Nothing is submitted anywhere."""
    from hailuo_pipe.sync import pull_board

    boards = _boards(specs, variables, provider)
    cache = _open_cache(cache_url, boards)
    rows = []
    for spec, (board, _) in zip(specs, boards, strict=True):
        rows += [(spec, o) for o in pull_board(cache, board)]
    if not as_json:
        click.echo(f"{cache.url}:")
    _sync_lines(rows, as_json, cache=cache.url)


@cache_group.command("gc")
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@cache_option
@spec_options
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=3600.0,
    show_default=True,
    metavar="SECONDS",
    help="Leave half-pushed entries younger than this alone (their push may be under way).",
)
@json_option
@reports_errors
def cache_gc(
    specs: tuple[str, ...],
    cache_url: str | None,
    variables: tuple[str, ...],
    provider: str | None,
    dry_run: bool,
    grace: float,
    as_json: bool,
) -> None:
    """Delete every entry that none of SPECS (as they are now, and their lockfiles) uses,
    and every expired lease."""
    from hailuo_pipe.sync import gc_cache

    boards = _boards(specs, variables, provider)
    cache = _open_cache(cache_url, boards)
    removed, expired = gc_cache(cache, boards, dry_run=dry_run, grace=grace)
    if as_json:
        _echo_json(
            {
                "ok": True,
                "cache": cache.url,
                "dry_run": dry_run,
                "entries": removed,
                "leases": [_lease_json(held) for held in expired],
            }
        )
        return
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{cache.url}:")
    for fingerprint in removed:
        click.echo(f"  {verb} {_short(fingerprint)}")
    for held in expired:
        click.echo(f"  {verb}{_lease_line(held)}")
    click.echo(f"{verb} {len(removed)} entries and {len(expired)} expired leases")
