"""A storyboard's own consistency, checked before anything is spent: frame references name
scenes that exist (and form no cycle), the cut's sequence names scenes that exist, and image
files are readable, within the limits and inside the project. Each problem is located at its
file:line:col; `validate.check` runs these in its one pass.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path

from hailuo_pipe import paths
from hailuo_pipe.errors import Problem
from hailuo_pipe.storyboard import images, yamldoc
from hailuo_pipe.storyboard.graph import CycleError, Graph
from hailuo_pipe.storyboard.model import Scene, Storyboard
from hailuo_pipe.storyboard.resolve import URL

# Makes a located problem from a scene, one of its keys ("image", "options.fps") and a message.
Locator = Callable[[Scene, str, str], Problem]


def graph_problems(
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


def image_problems(scene: Scene, at: Locator, project: Path | None = None) -> list[Problem]:
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


def unresolved_image_problems(
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


def _nearest_file(path: Path) -> str:
    """A hint naming the closest existing file beside a missing one (a typo'd image name)."""
    try:
        if path.exists() or not path.parent.is_dir():
            return ""
        names = sorted(p.name for p in path.parent.iterdir() if p.is_file())[:10_000]
    except (OSError, ValueError):
        return ""
    return did_you_mean(path.name, names)


def cut_problems(
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


def did_you_mean(name: str, known: Iterable[object]) -> str:
    """` (did you mean 'x'?)` for the closest of `known` to a mistyped name, else ''."""
    close = difflib.get_close_matches(name, [str(k) for k in known], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
