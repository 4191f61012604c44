"""Everything that can be known about a storyboard before spending: one pass, all problems.

load -> storyboard schema -> templates -> ids -> graph -> per-provider checks -> images.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import secrets
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hailuo_pipe import paths, providers
from hailuo_pipe.errors import Problem, SpecError, UnknownName
from hailuo_pipe.storyboard import images, schemas, yamldoc
from hailuo_pipe.storyboard.graph import CycleError, Graph
from hailuo_pipe.storyboard.model import Scene, Storyboard, render_dir_of
from hailuo_pipe.storyboard.resolve import URL, resolve

MAX_PROMPT = 2000
PLACEHOLDER = "sha256:" + "0" * 64

# Makes a located problem from a scene, one of its keys ("image", "options.fps") and a message.
Locator = Callable[[Scene, str, str], Problem]


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
    board, problems = resolve(doc, path.resolve(), overrides=overrides, provider=provider)
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
    problems += _graph_problems(seen, at, broken)
    for scene in board.scenes:  # a duplicate's own problems are independent of its id's
        problems += _provider_problems(scene, at, memo)
        problems += _image_problems(scene, at, path.resolve().parent)
    problems += _unresolved_image_problems(doc, board, path.resolve().parent)
    memo.save()
    problems += _cut_problems(doc, board, seen, broken)
    problems += _project_problems(doc, board)
    return board, problems


def _unresolved_image_problems(
    doc: yamldoc.Document, board: Storyboard, base: Path
) -> list[Problem]:
    """Image files of scenes that failed to resolve (a template error in their prompt, say) are
    still checked when their path is plain text: a missing file is its own problem."""
    made = {s.where.get("") for s in board.scenes}
    out = []
    for i, raw in enumerate(doc.data.get("scenes") or ()):
        if not isinstance(raw, dict) or "foreach" in raw or doc.locate(("scenes", i)) in made:
            continue
        for key in ("image", "end_image"):
            text = raw.get(key)
            if not isinstance(text, str) or "{" in text or URL.match(text):
                continue
            file = Path(os.path.normpath(base / text))
            try:
                images.check(file, text)
            except images.ImageProblem as err:
                out.append(doc.problem(("scenes", i, key), str(err) + _nearest_file(file)))
            except ValueError:  # a NUL in the path: the schema or the resolver said so
                continue
    return out


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


def did_you_mean(name: str, known: Iterable[object]) -> str:
    """` (did you mean 'x'?)` for the closest of `known` to a mistyped name, else ''."""
    close = difflib.get_close_matches(name, [str(k) for k in known], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


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


def _graph_problems(
    scenes: Mapping[str, Scene], at: Locator, broken: Collection[str] = ()
) -> list[Problem]:
    out = []
    # a scene the schema refused may have a templated id: then any reference may be to it
    unknowable = any("{" in b for b in broken)
    for scene in scenes.values():
        for key in ("image", "end_image"):
            img = getattr(scene, key)
            if img and img.ref and img.ref.scene in broken:
                continue
            if img and img.ref and img.ref.scene not in scenes and not unknowable:
                out.append(
                    at(
                        scene,
                        f"{key}.from",
                        f"{key} takes a frame from scene {img.ref.scene!r}, which does not exist"
                        + did_you_mean(img.ref.scene, scenes),
                    )
                )
            elif img and img.ref and img.ref.scene == scene.id:
                out.append(at(scene, f"{key}.from", f"scene {scene.id!r} cannot use its own frame"))
    graph = Graph.of(scenes.values())
    # a scene using its own frame is reported above; the cycle check looks for longer ones
    needs = {node: tuple(d for d in deps if d != node) for node, deps in graph.needs.items()}
    try:
        Graph(graph.order, needs).topological()
    except CycleError as err:
        # at the reference that closes the cycle: the last scene's `from` back to the first
        closing, target = scenes[err.cycle[-2]], err.cycle[-1]
        key = next(
            (
                k
                for k in ("image", "end_image")
                if (img := getattr(closing, k)) and img.ref and img.ref.scene == target
            ),
            "image",
        )
        out.append(
            at(closing, f"{key}.from", "frame references form a cycle: " + " -> ".join(err.cycle))
        )
    return out


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


def _image_problems(scene: Scene, at: Locator, project: Path | None = None) -> list[Problem]:
    out = []
    for key in ("image", "end_image"):
        img = getattr(scene, key)
        if img is not None and img.path is not None:
            why = paths.escape(project, img.path) if project is not None else None
            if why is not None:
                out.append(at(scene, key, f"image {img.written or img.path} {why}"))
                continue
            try:
                images.check(img.path, img.written)
            except images.ImageProblem as err:
                out.append(at(scene, key, str(err) + _nearest_file(img.path)))
    return out


def _nearest_file(path: Path) -> str:
    """A hint naming the closest existing file beside a missing one (a typo'd image name)."""
    try:
        if path.exists() or not path.parent.is_dir():
            return ""
        names = sorted(p.name for p in path.parent.iterdir() if p.is_file())[:10_000]
    except (OSError, ValueError):
        return ""
    return did_you_mean(path.name, names)


def _cut_problems(
    doc: yamldoc.Document,
    board: Storyboard,
    scenes: Mapping[str, Scene],
    broken: Collection[str] = (),
) -> list[Problem]:
    if board.output is None:
        return []
    out = []
    if ".." in Path(board.output.path).parts:
        out.append(
            doc.problem(
                ("output", "path"), "output.path must stay inside the spec's folder (no '..')"
            )
        )
    for i, scene_id in enumerate(board.output.sequence):
        if scene_id not in scenes and scene_id not in broken:
            out.append(
                doc.problem(
                    ("output", "sequence", i),
                    f"output.sequence names scene {scene_id!r}, which does not exist"
                    + did_you_mean(scene_id, scenes),
                )
            )
    return out


def _project_problems(doc: yamldoc.Document, board: Storyboard) -> list[Problem]:
    """What the render would write or read beside the spec, refused before anything is spent
    when a symlink leads it out of the project, it is a special file, or it is shared."""
    base = board.path.parent
    out = []
    lock = board.lock_path
    why = paths.escape(base, Path(lock.name))
    if why is not None:
        out.append(
            doc.problem((), f"the lockfile {lock.name} {why}; restore the real lockfile from git")
        )
    pid = lock.with_name(f".{lock.name}.pid")
    why = "is a symlink" if os.path.islink(pid) else paths.escape(base, Path(pid.name))
    if why is not None:
        out.append(
            doc.problem(
                (), f"the render lock file {pid.name} {why}; delete it (it only holds a pid)"
            )
        )
    for folder in (base / "renders", board.render_dir):
        why = paths.escape(base, folder, kind="folder")
        if why is not None:
            rel = folder.relative_to(base).as_posix()
            out.append(doc.problem(("name",), f"the render folder {rel}/ {why}", key=True))
            break
    if board.output is not None and ".." not in Path(board.output.path).parts:
        out += _output_problems(doc, board)
    out += _name_problems(doc, board, _sibling_names(board))
    return out


def _output_problems(doc: yamldoc.Document, board: Storyboard) -> list[Problem]:
    assert board.output is not None
    base = board.path.parent
    written = board.output.path
    why = paths.escape(base, Path(written))
    if why is not None:
        return [doc.problem(("output", "path"), f"output.path {written} {why}")]
    dest = Path(os.path.normpath(base / written))
    clips = board.render_dir
    if dest == clips or clips in dest.parents:
        rel = clips.relative_to(base).as_posix()
        return [
            doc.problem(
                ("output", "path"),
                f"output.path {written} is inside {rel}/, where the scenes' clips and frames "
                "are kept; choose a path outside it",
            )
        ]
    return []


def _sibling_names(board: Storyboard) -> list[tuple[str, dict[yamldoc.DocPath, str]]]:
    """(file name, its name and output.path) of the other storyboards in the spec's folder."""
    me = board.path
    try:
        siblings = sorted(
            entry.path
            for entry in os.scandir(me.parent)
            if entry.name.endswith((".yaml", ".yml"))
            and entry.is_file(follow_symlinks=False)  # a link to a storyboard is that storyboard
            and entry.name != me.name
        )
    except OSError:
        return []
    return [
        (Path(other).name, declared)
        for other in siblings
        if (declared := _declared(Path(other))) is not None
    ]


def _name_problems(
    doc: yamldoc.Document, board: Storyboard, siblings: list[tuple[str, dict[yamldoc.DocPath, str]]]
) -> list[Problem]:
    """Two storyboards of one name in one folder share renders/NAME/ and would overwrite each
    other's clips; a cut inside another's render folder, or at another's cut path, would
    overwrite those too."""
    out = []
    for other, declared in siblings:
        if declared[("name",)] == board.name:
            out.append(
                doc.problem(
                    ("name",),
                    f"storyboard name {board.name!r} is also declared by {other}; "
                    f"both would render into renders/{board.name}/ and overwrite each other's "
                    "clips: give one of them another name",
                    key=True,
                )
            )
            break
    if board.output is None or ".." in Path(board.output.path).parts:
        return out
    base = board.path.parent
    dest = Path(os.path.normpath(base / board.output.path))
    for other, declared in siblings:
        theirs = declared.get(("output", "path"))
        if theirs is not None and os.path.normpath(base / theirs) == str(dest):
            out.append(
                doc.problem(
                    ("output", "path"),
                    f"output.path {board.output.path} is also the cut of {other}; each would "
                    "overwrite the other's: choose another path",
                )
            )
            break
    for other, declared in siblings:
        name = declared[("name",)]
        folder = render_dir_of(board.path, name)
        if name != board.name and (folder == dest or folder in dest.parents):
            out.append(
                doc.problem(
                    ("output", "path"),
                    f"output.path {board.output.path} is inside renders/{name}/, where the "
                    f"clips of {other} are kept; choose a path outside it",
                )
            )
            break
    return out


_NODES = (yaml.ScalarEvent, yaml.AliasEvent, yaml.CollectionStartEvent)
_WANTED: frozenset[yamldoc.DocPath] = frozenset({("name",), ("version",), ("output", "path")})


@dataclass
class _Frame:
    mapping: bool
    path: yamldoc.DocPath | None  # None: inside something no wanted value can be in
    key: str | None = None
    awaiting_value: bool = False


def _declared(path: Path) -> dict[yamldoc.DocPath, str] | None:
    """The top-level `name:` and `output.path` of a YAML file that also has a top-level
    `version: 1` (a storyboard, not a workflow file that happens to have a name), read from
    parser events without building the document; None for anything else."""
    try:
        text = paths.read_regular(path, yamldoc.MAX_FILE_BYTES, "storyboard").decode("utf-8-sig")
    except (OSError, paths.PathRefused, UnicodeDecodeError):
        return None
    found: dict[yamldoc.DocPath, str] = {}
    stack: list[_Frame] = []
    try:
        for event in yaml.parse(text, Loader=yamldoc._Loader):
            if isinstance(event, yaml.CollectionEndEvent):
                stack.pop()
                if not stack:
                    break
                continue
            if not isinstance(event, _NODES):
                continue
            scalar = event.value if isinstance(event, yaml.ScalarEvent) else None
            where: yamldoc.DocPath | None = None
            if not stack:
                if not isinstance(event, yaml.MappingStartEvent):
                    return None
                where = ()
            else:
                top = stack[-1]
                if top.mapping and not top.awaiting_value:  # a key
                    top.key, top.awaiting_value = scalar or "", True
                elif top.mapping:  # a value
                    top.awaiting_value = False
                    if top.path is not None:
                        where = (*top.path, top.key or "")
                        if scalar is not None and where in _WANTED:
                            found[where] = scalar
            if isinstance(event, yaml.CollectionStartEvent):
                stack.append(_Frame(isinstance(event, yaml.MappingStartEvent), where))
            if len(found) == len(_WANTED):
                break
    except yaml.YAMLError:
        return None
    return found if found.get(("version",)) == "1" and ("name",) in found else None
