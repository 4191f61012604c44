"""Everything that can be known about a storyboard before spending: one pass, all problems.

load -> storyboard schema -> templates -> ids -> graph -> per-provider checks -> images.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import images, paths, providers, schemas, spec
from .errors import Problem, SpecError
from .graph import CycleError, Graph
from .resolve import resolve
from .storyboard import Scene, Storyboard, render_dir_of

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
    doc, problems = spec.load(path, display)
    if problems:
        return None, problems
    memo = schemas.SchemaMemo(_memo_path(path, doc.data))
    problems = memo.document_problems(doc)
    if problems:
        return None, problems
    board, problems = resolve(doc, path.resolve(), overrides=overrides, provider=provider)
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
    problems += _graph_problems(seen, at)
    for scene in seen.values():
        problems += _provider_problems(scene, at, memo)
        problems += _image_problems(scene, at, path.resolve().parent)
    memo.save()
    problems += _cut_problems(doc, board, seen)
    problems += _project_problems(doc, board)
    return board, problems


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


def _graph_problems(scenes: Mapping[str, Scene], at: Locator) -> list[Problem]:
    out = []
    for scene in scenes.values():
        for key in ("image", "end_image"):
            img = getattr(scene, key)
            if img and img.ref and img.ref.scene not in scenes:
                out.append(
                    at(
                        scene,
                        f"{key}.from",
                        f"{key} takes a frame from scene {img.ref.scene!r}, which does not exist",
                    )
                )
            elif img and img.ref and img.ref.scene == scene.id:
                out.append(at(scene, f"{key}.from", f"scene {scene.id!r} cannot use its own frame"))
    if out:
        return out
    try:
        Graph.of(scenes.values()).topological()
    except CycleError as err:
        first = scenes[err.cycle[0]]
        out.append(at(first, "", "frame references form a cycle: " + " -> ".join(err.cycle)))
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
    if scene.end_image is not None and not caps.end_image:
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
    if out or (cls.local and scene.provider != "preview"):
        return out
    images_ = {
        k: (img.url or PLACEHOLDER)
        for k in ("image", "end_image")
        if (img := getattr(scene, k)) is not None
    }
    body = cls().build_request(scene, images_).body
    for path, message in memo.errors(scene.provider, body):
        out.append(at(scene, _origin(cls, scene, path), f"{scene.provider}: {message}"))
    return out


def _origin(cls: type[providers.Provider], scene: Scene, path: spec.DocPath) -> str:
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
                out.append(at(scene, key, str(err)))
    return out


def _cut_problems(
    doc: spec.Document, board: Storyboard, scenes: Mapping[str, Scene]
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
        if scene_id not in scenes:
            out.append(
                doc.problem(
                    ("output", "sequence", i),
                    f"output.sequence names scene {scene_id!r}, which does not exist",
                )
            )
    return out


def _project_problems(doc: spec.Document, board: Storyboard) -> list[Problem]:
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


def _output_problems(doc: spec.Document, board: Storyboard) -> list[Problem]:
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


def _sibling_names(board: Storyboard) -> list[tuple[str, dict[spec.DocPath, str]]]:
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
    doc: spec.Document, board: Storyboard, siblings: list[tuple[str, dict[spec.DocPath, str]]]
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
_WANTED: frozenset[spec.DocPath] = frozenset({("name",), ("version",), ("output", "path")})


@dataclass
class _Frame:
    mapping: bool
    path: spec.DocPath | None  # None: inside something no wanted value can be in
    key: str | None = None
    awaiting_value: bool = False


def _declared(path: Path) -> dict[spec.DocPath, str] | None:
    """The top-level `name:` and `output.path` of a YAML file that also has a top-level
    `version: 1` (a storyboard, not a workflow file that happens to have a name), read from
    parser events without building the document; None for anything else."""
    try:
        text = paths.read_regular(path, spec.MAX_FILE_BYTES, "storyboard").decode("utf-8-sig")
    except (OSError, paths.PathRefused, UnicodeDecodeError):
        return None
    found: dict[spec.DocPath, str] = {}
    stack: list[_Frame] = []
    try:
        for event in yaml.parse(text, Loader=spec._Loader):
            if isinstance(event, yaml.CollectionEndEvent):
                stack.pop()
                if not stack:
                    break
                continue
            if not isinstance(event, _NODES):
                continue
            scalar = event.value if isinstance(event, yaml.ScalarEvent) else None
            where: spec.DocPath | None = None
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
