"""From a schema-valid document to a `Storyboard`: defaults, `foreach`, templates, image refs.

Runs only on parts of the document that passed the storyboard schema, so it can trust shapes
and types; what it checks is what needs the templates rendered first (ids, prompts).
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from hailuo_pipe.errors import Problem
from hailuo_pipe.storyboard.model import Cut, FrameRef, ImageInput, Location, Scene, Storyboard
from hailuo_pipe.storyboard.templates import TemplateProblem, Templates
from hailuo_pipe.storyboard.yamldoc import DocPath, Document

BUILTIN_DEFAULTS: Mapping[str, Any] = {
    "duration": 6,
    "resolution": "768p",
    "prompt_optimizer": False,
}
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
URL = re.compile(r"^https?://", re.IGNORECASE)
MAX_FOREACH = 10_000  # scenes one foreach may make


class _Resolver:
    def __init__(
        self,
        doc: Document,
        spec_path: Path,
        overrides: Mapping[str, str],
        provider_override: str | None,
    ) -> None:
        self.doc = doc
        self.base = spec_path.parent
        self.data: dict[str, Any] = doc.data
        self.variables = {**self.data.get("vars", {}), **overrides}
        self.defaults = {**BUILTIN_DEFAULTS, **self.data.get("defaults", {})}
        self.provider_override = provider_override
        self.overridden = False  # the override changed some scene's provider
        self.templates = Templates(self.base / "templates", self.base)
        self.problems: list[Problem] = []
        self._whole_duration(self.data.get("defaults", {}), ("defaults",))

    def problem(self, path: DocPath, text: str, *, line_offset: int = 0) -> None:
        if self.doc.merged_prefix(path) is not None:
            # merged by `<<: *anchor`: at the scene's `<<`, naming the scene and the anchor's line
            self.problems.append(self.doc.problem(path, text))
            return
        loc = self.doc.locate(path)
        if line_offset:
            block = 1 if path in self.doc.block_scalars else 0
            loc = Location(loc.line + block + line_offset, 1 if block else loc.col)
        self.problems.append(Problem(self.doc.file, loc.line, loc.col, text))

    def _whole_duration(self, raw: Mapping[str, Any], path: DocPath) -> None:
        # the schema's enum takes 6.0 for 6 (JSON numbers compare by value), and then a
        # provider such as WaveSpeed refuses the request with a 400: refused here, located
        value = raw.get("duration") if isinstance(raw, Mapping) else None
        if isinstance(value, float):
            shown = int(value) if value.is_integer() else value
            self.problem(
                (*path, "duration"),
                f"duration must be the whole number 6 or 10 (seconds): write {shown}, "
                f"not {value}",
            )

    def render(
        self, path: DocPath, source: str, variables: Mapping[str, Any], what: str
    ) -> str | None:
        try:
            return self.templates.render(source, variables)
        except TemplateProblem as err:
            offset = (err.line - 1) if err.line else 0
            self.problem(path, f"{what}: {err}", line_offset=offset)
            return None

    def scenes(self) -> list[Scene]:
        out: list[Scene] = []
        for index, raw in enumerate(self.data["scenes"]):
            if raw is None:  # refused by the schema: reported there, checked no further
                continue
            path: DocPath = ("scenes", index)
            for row in self._rows(path, raw):
                scene = self._scene(path, raw, row)
                if scene is not None:
                    out.append(scene)
        return out

    def _rows(self, path: DocPath, raw: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        spec = raw.get("foreach")
        if spec is None:
            return [{}]
        if isinstance(spec, list):
            rows = list(spec)
        else:
            names = list(spec)
            count = 1
            for values in spec.values():
                count *= len(values)
            if count > MAX_FOREACH:
                self.problem(
                    (*path, "foreach"),
                    f"foreach makes {count:,} scenes; at most {MAX_FOREACH:,} are allowed",
                )
                return []
            rows = [
                dict(zip(names, combo, strict=True)) for combo in itertools.product(*spec.values())
            ]
        if len(rows) > 1 and "{" not in raw["id"]:
            self.problem(
                (*path, "id"),
                "a scene with foreach needs a templated id such as "
                "'{{ city }}-dawn', so each scene it makes is unique",
            )
            return []
        return rows

    def _scene(self, path: DocPath, raw: Mapping[str, Any], row: Mapping[str, Any]) -> Scene | None:
        variables = {**self.variables, **row}
        before = len(self.problems)
        scene_id = self.render((*path, "id"), raw["id"], variables, "id")
        if (scene_id is not None and not SAFE_ID.match(scene_id)) or (
            scene_id and ".." in scene_id
        ):
            self.problem(
                (*path, "id"),
                f"scene id {scene_id!r} must be 1-64 letters, digits, "
                "'.', '_' or '-', starting with a letter or digit "
                "(it names files)",
            )
        prompt = self.render(
            (*path, "prompt"), raw["prompt"], {**variables, "id": scene_id}, "prompt"
        )
        images = {
            k: self._image((*path, k), raw[k], variables)
            for k in ("image", "end_image")
            if k in raw
        }
        setting = {
            k: raw.get(k, self.defaults.get(k))
            for k in ("provider", "duration", "resolution", "prompt_optimizer")
        }
        self._whole_duration(raw, path)
        if self.provider_override:
            self.overridden |= setting["provider"] != self.provider_override
            setting["provider"] = self.provider_override
        if setting["provider"] is None:
            self.problem(
                path,
                "no provider for this scene: set defaults.provider or the scene's "
                "provider (preview renders locally for free)",
            )
        if len(self.problems) > before or scene_id is None or prompt is None:
            return None
        return Scene(
            id=scene_id,
            prompt=prompt,
            provider=setting["provider"],
            duration=setting["duration"],
            resolution=setting["resolution"],
            prompt_optimizer=setting["prompt_optimizer"],
            image=images.get("image"),
            end_image=images.get("end_image"),
            options={**self.defaults.get("options", {}), **raw.get("options", {})},
            where=self._where(path, raw),
        )

    def _image(self, path: DocPath, raw: Any, variables: Mapping[str, Any]) -> ImageInput | None:
        if isinstance(raw, dict):
            ref = self.render((*path, "from"), raw["from"], variables, "from")
            return ImageInput(ref=FrameRef(ref, raw.get("frame", "last"))) if ref else None
        text = self.render(path, raw, variables, "image")
        if text is None:
            return None
        if URL.match(text):
            return ImageInput(url=text)
        return ImageInput(path=Path(os.path.normpath(self.base / text)), written=text)

    def _where(self, path: DocPath, raw: Mapping[str, Any]) -> dict[str, Location]:
        where = {"": self.doc.locate(path)}
        for key, value in raw.items():
            where[key] = self.doc.locate((*path, key))
            if isinstance(value, dict):
                for sub in value:
                    where[f"{key}.{sub}"] = self.doc.locate((*path, key, sub))
        # nested options keys too, so a problem deep in options points at its own line
        self._nested(where, "options", (*path, "options"), raw.get("options"))
        for sub in self.defaults.get("options", {}):
            where.setdefault(f"options.{sub}", self.doc.locate(("defaults", "options", sub)))
        self._nested(where, "options", ("defaults", "options"), self.defaults.get("options"))
        return where

    def _nested(self, where: dict[str, Location], key: str, path: DocPath, value: Any) -> None:
        if not isinstance(value, dict):
            return
        for sub, inner in value.items():
            if isinstance(inner, dict):
                for deep in inner:
                    where.setdefault(f"{key}.{sub}.{deep}", self.doc.locate((*path, sub, deep)))
                self._nested(where, f"{key}.{sub}", (*path, sub), inner)

    def cut(self) -> Cut | None:
        raw = self.data.get("output")
        if raw is None:
            return None
        return Cut(
            path=raw["path"], sequence=tuple(raw["sequence"]), where=self.doc.locate(("output",))
        )


def resolve(
    doc: Document,
    spec_path: Path,
    *,
    overrides: Mapping[str, str] | None = None,
    provider: str | None = None,
) -> tuple[Storyboard, list[Problem]]:
    """Build the storyboard from a schema-valid document; problems for what failed to render."""
    r = _Resolver(doc, spec_path, overrides or {}, provider)
    scenes = r.scenes()
    board = Storyboard(
        path=spec_path,
        name=doc.data["name"],
        scenes=tuple(scenes),
        vars=r.variables,
        output=r.cut(),
        cache=doc.data.get("cache"),
        # a storyboard that is all preview already is no rehearsal: it renders where it always did
        rehearsal=provider is not None and r.overridden and _is_local(provider),
        budget=Decimal(str(doc.data["budget"])) if "budget" in doc.data else None,
    )
    return board, r.problems


def _is_local(provider: str) -> bool:
    """A provider that renders on this machine, for free: overriding with it is a rehearsal."""
    from hailuo_pipe import providers

    return provider in providers.PROVIDER_NAMES and providers.get(provider).local
