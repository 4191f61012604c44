"""Everything that can be known about a storyboard before spending: one pass, all problems.

load -> storyboard schema -> templates -> ids -> graph -> per-provider checks -> images -> cut
-> the files beside the spec.

This module runs the pass and holds the checks that need a provider: its capabilities, options
that would override what its adapter sets, and the built request against its schema. The
storyboard's own consistency is checked in `storyboard/checks.py`, the files a render would
write beside the spec in `storyboard/project.py`.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from hailuo_pipe import paths, providers
from hailuo_pipe.errors import Problem, SpecError, UnknownName
from hailuo_pipe.storyboard import schemas, yamldoc
from hailuo_pipe.storyboard.checks import (
    Locator,
    cut_problems,
    did_you_mean,
    graph_problems,
    image_problems,
    unresolved_image_problems,
)
from hailuo_pipe.storyboard.model import Scene, Storyboard, render_dir_of
from hailuo_pipe.storyboard.project import project_problems
from hailuo_pipe.storyboard.resolve import resolve

MAX_PROMPT = 2000
PLACEHOLDER = "sha256:" + "0" * 64


def load_storyboard(
    path: Path,
    *,
    overrides: Mapping[str, str] | None = None,
    provider: str | None = None,
    display: str | None = None,
) -> Storyboard:
    """Load and check a storyboard; raises SpecError with every problem found."""
    board, problems = check(path, overrides=overrides, provider=provider, display=display)
    if problems or board is None:
        raise SpecError(problems)
    return board


def check(
    path: Path,
    *,
    overrides: Mapping[str, str] | None = None,
    provider: str | None = None,
    display: str | None = None,
) -> tuple[Storyboard | None, list[Problem]]:
    doc, problems = yamldoc.load(path, display)
    if problems:
        return None, problems
    memo = schemas.SchemaMemo(_memo_path(path, doc.data))
    schema_problems = memo.document_problems(doc)
    broken: set[str] = set()
    if schema_problems:
        # one pass: the scenes the schema refused are left out, the rest is checked as usual
        usable = _usable_part(doc)
        if usable is None:
            return None, schema_problems
        doc, broken = usable
    _check_overrides(doc.data.get("vars") or {}, overrides or {})
    spec_path = path.resolve()  # once: a realpath per scene was a tenth of a large no-op
    folder = spec_path.parent
    board, problems = resolve(doc, spec_path, overrides=overrides, provider=provider)
    problems = schema_problems + problems
    file = doc.file

    def at(scene: Scene, key: str, message: str) -> Problem:
        loc = scene.locate(key)
        return Problem(file, loc.line, loc.col, message)

    seen: dict[str, Scene] = {}
    for scene in board.scenes:
        if scene.id in seen:
            first = seen[scene.id].locate("id")
            problems.append(
                at(
                    scene,
                    "id",
                    f"duplicate scene id {scene.id!r} (first used at line {first.line})",
                )
            )
        seen.setdefault(scene.id, scene)
    # scenes that are written but failed to resolve (a template error, reported) still exist
    raw_scenes = doc.data.get("scenes") if isinstance(doc.data, dict) else None
    broken |= {
        raw["id"]
        for raw in raw_scenes or ()
        if isinstance(raw, dict) and isinstance(raw.get("id"), str) and "{" not in raw["id"]
    } - set(seen)
    problems += graph_problems(seen, at, broken)
    for scene in board.scenes:  # a duplicate's own problems are independent of its id's
        problems += _provider_problems(scene, at, memo)
        problems += image_problems(scene, at, folder)
    problems += unresolved_image_problems(doc, board, folder)
    memo.save()
    problems += cut_problems(doc, board, seen, broken)
    problems += project_problems(doc, board)
    return board, problems


# Top-level keys whose schema problems leave the scenes meaningful: checked without them.
_SEPARABLE = frozenset({"version", "description", "output", "cache", "budget"})


def _usable_part(doc: yamldoc.Document) -> tuple[yamldoc.Document, set[str]] | None:
    """The document without the scenes (and separable keys) the schema refused, and the ids
    those scenes declare; None when what is wrong (name, vars, defaults, the scene list) makes
    every scene meaningless."""
    data = doc.data
    if not isinstance(data, dict) or not isinstance(data.get("scenes"), list):
        return None
    scenes: list[Any] = data["scenes"]
    bad: set[int] = set()
    drop: set[str] = set()
    for err in schemas.validator("storyboard").iter_errors(data):
        where = tuple(err.absolute_path)
        if not where:
            if err.validator == "additionalProperties":  # an unknown key is read by nothing
                continue
            missing = set(err.validator_value) - set(data) if err.validator == "required" else {""}
            if missing <= {"name", "version"}:
                drop |= missing
                continue
            return None
        if where[0] == "scenes" and len(where) >= 2 and isinstance(where[1], int):
            bad.add(where[1])
        elif where[0] in _SEPARABLE or where[0] == "name":
            drop.add(str(where[0]))
        else:
            return None
    if len(bad) >= len(scenes):
        return None
    broken = {
        str(raw.get("id"))
        for i, raw in enumerate(scenes)
        if i in bad and isinstance(raw, dict) and isinstance(raw.get("id"), str)
    }
    kept = {k: v for k, v in data.items() if k not in drop}
    if "name" in drop:  # the name only names the render folder, which validate never makes
        kept["name"] = "storyboard"
    # None keeps every other scene at its own index, so its problems point at its own lines
    kept["scenes"] = [None if i in bad else raw for i, raw in enumerate(scenes)]
    return dataclasses.replace(doc, data=kept), broken


def _check_overrides(declared: Mapping[str, object], overrides: Mapping[str, str]) -> None:
    """A --var the storyboard does not declare would silently change nothing: refuse it."""
    for name in overrides:
        if name not in declared:
            hint = did_you_mean(name, declared) or (
                f" (it declares {', '.join(map(repr, declared))})"
                if declared
                else " (it declares no vars)"
            )
            raise UnknownName(f"--var {name}: the storyboard declares no variable {name!r}{hint}")


def _memo_path(path: Path, data: object) -> Path | None:
    """Where the storyboard's SchemaMemo lives, known before the document is checked: only a
    name that is one plain path component is used to look there."""
    name = data.get("name") if isinstance(data, dict) else None
    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name:
        return None
    spec_path = path.resolve()
    folder = render_dir_of(spec_path, name)
    # the memo is written there: not through a `renders` symlink that leads out of the project
    base = spec_path.parent
    if any(paths.escape(base, f, kind="folder") for f in (folder.parent, folder)):
        return None
    return folder / ".checked-requests"


def _provider_problems(scene: Scene, at: Locator, memo: schemas.SchemaMemo) -> list[Problem]:
    cls = providers.get(scene.provider)
    caps, title = cls.capabilities, cls.title
    out = []
    if len(scene.prompt) > MAX_PROMPT:
        out.append(
            at(
                scene,
                "prompt",
                f"the prompt is {len(scene.prompt)} characters once "
                f"rendered; at most {MAX_PROMPT} are allowed",
            )
        )
    if scene.resolution not in caps.durations:
        out.append(
            at(
                scene,
                "resolution",
                f"{title} does not render {scene.resolution}; it "
                f"offers {', '.join(caps.resolutions)}",
            )
        )
    elif scene.duration not in caps.durations[scene.resolution]:
        offered = " or ".join(str(d) for d in caps.durations[scene.resolution])
        out.append(
            at(
                scene,
                "duration",
                f"{title} renders {scene.resolution} clips of {offered} s, not {scene.duration} s",
            )
        )
    if scene.resolution in caps.needs_first_frame and scene.image is None and not out:
        out.append(
            at(
                scene,
                "resolution",
                f"{scene.resolution} needs a first frame: add an image to this scene",
            )
        )
    if scene.end_image is not None and scene.resolution in caps.no_end_image:
        out.append(
            at(
                scene,
                "end_image",
                f"{title} takes no last frame at {scene.resolution}; remove end_image "
                "or use another resolution",
            )
        )
    elif scene.end_image is not None and not caps.end_image:
        out.append(
            at(
                scene,
                "end_image",
                f"{title} takes no last frame; remove end_image or choose a provider that does",
            )
        )
    if not caps.local_images:
        for key in ("image", "end_image"):
            img = getattr(scene, key)
            if img is not None and img.url is None:
                out.append(
                    at(
                        scene,
                        key,
                        f"{title} takes only image URLs, so "
                        f"{img.describe()} cannot be sent; use an https URL "
                        "or another provider",
                    )
                )
    conflicts = [] if cls.local else _option_problems(cls, scene, at)
    if out or (cls.local and scene.provider != "preview"):
        return out + conflicts
    images_ = {
        k: (img.url or PLACEHOLDER)
        for k in ("image", "end_image")
        if (img := getattr(scene, k)) is not None
    }
    body = cls().build_request(scene, images_).body
    # an overriding option is reported once, as that, not again as what it breaks on the wire
    taken = {(p.line, p.col) for p in conflicts}
    for path, message in memo.errors(scene.provider, body):
        problem = at(scene, _origin(cls, scene, path), f"{scene.provider}: {message}")
        if (problem.line, problem.col) not in taken:
            out.append(problem)
    return out + conflicts


def _marked(value: Any, mark: str, prefix: tuple[str, ...] = ()) -> Any:
    """`value` with every leaf replaced by a marker naming its options path."""
    if isinstance(value, Mapping) and value:  # an empty mapping replaces like a leaf
        return {k: _marked(v, mark, (*prefix, str(k))) for k, v in value.items()}
    return mark + "\x00".join(prefix)


def _markers(
    value: Any, mark: str, path: tuple[Any, ...] = ()
) -> Iterator[tuple[tuple[Any, ...], str]]:
    """(wire path, options path) of every marker in a built request."""
    if isinstance(value, str) and value.startswith(mark):
        yield path, value[len(mark) :].replace("\x00", ".")
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _markers(v, mark, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _markers(v, mark, (*path, i))


def _overrides(base: Any, path: tuple[Any, ...]) -> bool:
    """Whether a value put at `path` replaces something the adapter itself set there."""
    node = base
    for part in path:
        if isinstance(node, Mapping):
            if part not in node:
                return False
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int):
            if part >= len(node):
                return False
            node = node[part]
        else:
            return True  # a scalar the adapter set is being replaced by a mapping
    return True


def _option_problems(cls: type[providers.Provider], scene: Scene, at: Locator) -> list[Problem]:
    """Options that would replace what the adapter fills from a scene field (or sets itself):
    the plan, the price and --max-cost read the scene, so the wire must not say otherwise."""
    if not scene.options:
        return []
    both = {"image": PLACEHOLDER, "end_image": PLACEHOLDER}
    # unguessable, so a prompt cannot pass for an option
    mark = f"\x00option-{secrets.token_hex(8)}:"
    try:
        base = cls().build_request(dataclasses.replace(scene, options={}), both)
        marked = cls().build_request(
            dataclasses.replace(scene, options=_marked(scene.options, mark)), both
        )
    except Exception:  # the schema check below reports a request that cannot be built
        return []
    out = []
    found = {key: wire for wire, key in _markers(marked.body, mark)}
    for key in scene.options:
        if str(key) in cls.field_origins and str(key) not in found:
            found[str(key)] = (str(key),)
    for key, wire in sorted(found.items()):
        names = [p for p in (*wire, key.rpartition(".")[2]) if isinstance(p, str)]
        origin = next((cls.field_origins[p] for p in reversed(names) if p in cls.field_origins), "")
        if not (_overrides(base.body, wire) or key.split(".")[0] in cls.field_origins):
            continue
        if origin:
            text = f"options.{key}: set the scene's `{origin}` instead"
        else:
            text = f"options.{key}: hailuo-pipe sets this for {cls.title} itself; remove it"
        out.append(at(scene, f"options.{key}", text))
    return out


def _origin(cls: type[providers.Provider], scene: Scene, path: yamldoc.DocPath) -> str:
    """The scene key a wire field came from, so the error points at the right YAML line."""
    for part in reversed(path):
        if not isinstance(part, str):
            continue
        if part in cls.field_origins:
            return cls.field_origins[part]
        if f"options.{part}" in scene.where:
            return f"options.{part}"
        if part in scene.where:
            return part
    return "options" if "options" in scene.where else ""
