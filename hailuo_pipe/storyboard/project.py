"""The files a render writes or reads beside its storyboard, checked before anything is spent.

The lockfile, the render lock, the render folders and the cut are refused when a symlink leads
them out of the project, when they are special files, or when another storyboard in the same
folder would write there too (one `name:`, one cut path, a cut inside its render folder). The
other storyboards are read from YAML parser events, without building their documents.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from hailuo_pipe import paths
from hailuo_pipe.errors import Problem
from hailuo_pipe.storyboard import yamldoc
from hailuo_pipe.storyboard.model import Storyboard, render_dir_of


def project_problems(doc: yamldoc.Document, board: Storyboard) -> list[Problem]:
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
