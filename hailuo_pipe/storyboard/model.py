"""The storyboard as data: what `spec.py` produces and everything downstream consumes.

Scenes here are resolved: templates rendered, defaults applied, `foreach` expanded. Each keeps
where its keys stood in the YAML file so later checks (provider schemas, images, graph) can
point at the line that caused a problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

Frame = Literal["first", "last"]
RESOLUTIONS = ("512p", "768p", "1080p")
DURATIONS = (6, 10)


@dataclass(frozen=True)
class Location:
    line: int
    col: int


@dataclass(frozen=True)
class FrameRef:
    """`{from: SCENE, frame: first|last}`: a frame of another scene's finished clip."""

    scene: str
    frame: Frame


@dataclass(frozen=True)
class ImageInput:
    """A first or last frame: exactly one of a local file, a URL, or another scene's frame."""

    path: Path | None = None
    url: str | None = None
    ref: FrameRef | None = None
    written: str = field(default="", compare=False)  # the path as the spec wrote it

    def describe(self) -> str:
        if self.ref is not None:
            return f"the {self.ref.frame} frame of scene {self.ref.scene!r}"
        return self.url if self.url is not None else (self.written or str(self.path))


@dataclass(frozen=True)
class Scene:
    id: str
    prompt: str
    provider: str
    duration: int
    resolution: str
    prompt_optimizer: bool
    image: ImageInput | None = None
    end_image: ImageInput | None = None
    options: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=True)
    # Where each key of the scene stood in the file: "id", "prompt", "image", "options.fps", ...
    where: Mapping[str, Location] = field(default_factory=dict, hash=False, compare=False)

    def locate(self, key: str) -> Location:
        """The position of `key` (or of its closest located parent, or of the scene itself)."""
        while key:
            if key in self.where:
                return self.where[key]
            key = key.rpartition(".")[0]
        return self.where.get("", Location(1, 1))

    def frame_refs(self) -> list[FrameRef]:
        return [img.ref for img in (self.image, self.end_image) if img and img.ref]


@dataclass(frozen=True)
class Cut:
    """`output: {path, sequence}`: the final film assembled from finished scenes."""

    path: str
    sequence: tuple[str, ...]
    where: Location = Location(1, 1)


REHEARSAL = "preview"  # the folder, under a storyboard's render folder, of its rehearsals


def render_dir_of(spec: Path, name: str) -> Path:
    """Clips and extracted frames go here, one folder per storyboard beside the spec."""
    return spec.parent / "renders" / name


@dataclass(frozen=True)
class Storyboard:
    path: Path
    name: str
    scenes: tuple[Scene, ...]
    vars: Mapping[str, Any] = field(default_factory=dict, hash=False)
    output: Cut | None = None
    cache: str | None = None
    # A rehearsal (`--provider preview` over a storyboard of paid providers) lives in its own
    # folder with its own lockfile, so it can never replace, re-id or delete a paid result.
    rehearsal: bool = False
    budget: Decimal | None = None  # USD a render may spend; --max-cost overrides it

    @property
    def lock_path(self) -> Path:
        if self.rehearsal:
            return self.render_dir / f"{self.path.stem}.lock"
        return self.path.with_suffix(".lock")

    @property
    def render_dir(self) -> Path:
        home = render_dir_of(self.path, self.name)
        return home / REHEARSAL if self.rehearsal else home

    @property
    def cut_path(self) -> str | None:
        """Where the cut goes, relative to the spec's folder: a rehearsal's beside its clips."""
        if self.output is None:
            return None
        if not self.rehearsal:
            return self.output.path
        name = Path(self.output.path).name
        return (self.render_dir / name).relative_to(self.path.parent).as_posix()

    def scene(self, scene_id: str) -> Scene:
        return self._by_id[scene_id]

    # The one place a scene's files are named (the render folder is the storyboard's own).
    def clip_path(self, scene_id: str) -> Path:
        return self.render_dir / f"{scene_id}.mp4"

    def frame_path(self, scene_id: str, which: str) -> Path:
        """`which`: "first" or "last"."""
        return self.render_dir / f"{scene_id}.{which}.png"

    def scene_files(self, scene_id: str) -> dict[str, Path]:
        """The files a finished scene has: its clip and both its frames."""
        return {
            "clip": self.clip_path(scene_id),
            "first": self.frame_path(scene_id, "first"),
            "last": self.frame_path(scene_id, "last"),
        }

    @cached_property
    def _by_id(self) -> dict[str, Scene]:
        return {s.id: s for s in reversed(self.scenes)}  # the first of a duplicate id wins
