"""`cache ls/push/pull/gc`: the shared result cache, over storyboards."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import click

from hailuo_pipe.cli.common import F, echo_json, json_option, reports_errors, spec_options
from hailuo_pipe.cli.common import load_spec as _load
from hailuo_pipe.cli.common import scrub as _scrub
from hailuo_pipe.cli.defaults import ConfiguredGroup

if TYPE_CHECKING:
    from hailuo_pipe.cache import Cache, LeaseHeld
    from hailuo_pipe.state.lockfile import Lockfile
    from hailuo_pipe.storyboard.model import Storyboard


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
    from hailuo_pipe.state.lockfile import Lockfile

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


@click.group("cache", cls=ConfiguredGroup)
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
        echo_json(
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
        echo_json(
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
        echo_json(
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
