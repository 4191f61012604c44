"""A plan written to a file for review, and applied later exactly or not at all.

Like `terraform plan -out` / `apply PLANFILE`: `plan --out FILE` records what the plan was made
from (the storyboard's bytes, the lockfile's bytes, the options) and what it decided (each
scene's action, fingerprint and price). `render --plan FILE` plans again under the spec's lock
and refuses, before anything is sent, when the new plan differs in any of these: what was
reviewed is what runs, or nothing does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from hailuo_pipe.errors import StalePlan
from hailuo_pipe.plan import Plan
from hailuo_pipe.storyboard import images

FORMAT = "hailuo-pipe plan"
VERSION = 1
MAX_SIZE = 64 * 1024 * 1024  # a plan of 100,000 scenes is a few tens of MB


def lockfile_digest(path: Path, name: str) -> str | None:
    """The lockfile's digest as the render that applies the plan finds it: with the journal a
    killed render left folded in, as that render's lock does before the plan is checked."""
    from hailuo_pipe.state.lockfile import pending_digest

    pending = pending_digest(path, name)
    return "sha256:" + pending if pending is not None else file_digest(path)


def file_digest(path: Path) -> str | None:
    """sha256 of a file's bytes, or None when there is no such file."""
    try:
        return "sha256:" + images.file_digest(path)[0]
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class PlanOptions:
    """What, besides the files, decides a plan: every one is fixed by a saved plan."""

    variables: Mapping[str, str] = field(default_factory=dict)
    provider: str | None = None
    force: Sequence[str] = ()
    resubmit: Sequence[str] = ()
    only: Sequence[str] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "vars": dict(sorted(self.variables.items())),
            "provider": self.provider,
            "force": sorted(self.force),
            "resubmit": sorted(self.resubmit),
            "scenes": sorted(self.only) if self.only is not None else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlanOptions:
        only = data.get("scenes")
        return cls(
            variables={str(k): str(v) for k, v in (data.get("vars") or {}).items()},
            provider=data.get("provider"),
            force=tuple(map(str, data.get("force") or ())),
            resubmit=tuple(map(str, data.get("resubmit") or ())),
            only=tuple(map(str, only)) if only is not None else None,
        )


def _decisions(plan: Plan) -> list[dict[str, Any]]:
    return [
        {
            "scene": s.scene.id,
            "action": s.action,
            "provider": s.scene.provider,
            "fingerprint": s.fingerprint,
            "price": str(s.price),
            "reason": s.reason,
        }
        for s in plan.steps
    ]


@dataclass(frozen=True)
class SavedPlan:
    storyboard: str  # the storyboard's name
    spec_sha256: str
    lockfile_sha256: str | None  # None: there was no lockfile
    options: PlanOptions
    cost: Decimal
    steps: tuple[dict[str, Any], ...]

    @classmethod
    def of(
        cls, plan: Plan, *, name: str, spec: Path, lockfile: Path, options: PlanOptions
    ) -> SavedPlan:
        digest = file_digest(spec)
        assert digest is not None
        locked = lockfile_digest(lockfile, name)
        return cls(name, digest, locked, options, plan.cost, tuple(_decisions(plan)))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "storyboard": self.storyboard,
            "spec_sha256": self.spec_sha256,
            "lockfile_sha256": self.lockfile_sha256,
            "options": self.options.to_json(),
            "cost": str(self.cost),
            "steps": list(self.steps),
        }

    def write(self, path: Path) -> None:
        from hailuo_pipe.state.lockfile import atomic_write

        text = json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"
        atomic_write(path, text.encode())

    @classmethod
    def read(cls, path: Path) -> SavedPlan:
        try:
            if not path.is_file():
                raise StalePlan(f"{path}: no such plan file (make one with plan --out {path})")
            if path.stat().st_size > MAX_SIZE:
                raise StalePlan(f"{path}: too large to be a plan file")
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            raise StalePlan(f"{path}: not a readable plan file ({err})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise StalePlan(f"{path}: not a hailuo-pipe plan file")
        if data.get("version") != VERSION:
            raise StalePlan(
                f"{path}: plan format {data.get('version')!r}, this hailuo-pipe reads "
                f"{VERSION}; make the plan again with this version"
            )
        try:
            return cls(
                storyboard=str(data["storyboard"]),
                spec_sha256=str(data["spec_sha256"]),
                lockfile_sha256=data["lockfile_sha256"],
                options=PlanOptions.from_json(data["options"]),
                cost=Decimal(data["cost"]),
                steps=tuple(dict(s) for s in data["steps"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError, InvalidOperation) as err:
            raise StalePlan(f"{path}: a damaged plan file ({type(err).__name__}: {err})") from None

    def check(self, plan: Plan, *, name: str, spec: Path, lockfile: Path) -> None:
        """Refuse (StalePlan) unless `plan`, made now, is the one this file recorded."""
        if name != self.storyboard:
            raise StalePlan(f"the plan is for storyboard {self.storyboard!r}, not {name!r}")
        if file_digest(spec) != self.spec_sha256:
            raise StalePlan(f"{spec.name} changed since the plan was made")
        if lockfile_digest(lockfile, name) != self.lockfile_sha256:
            what = "appeared" if self.lockfile_sha256 is None else "changed"
            raise StalePlan(
                f"{lockfile.name} {what} since the plan was made (another render ran?)"
            )
        now = _decisions(plan)
        if len(now) != len(self.steps):
            raise StalePlan("the storyboard's scenes changed since the plan was made")
        for was, is_ in zip(self.steps, now, strict=True):
            for key in ("scene", "action", "provider", "fingerprint", "price"):
                if was.get(key) != is_[key]:
                    raise StalePlan(_difference(was, is_, key))


def _difference(was: Mapping[str, Any], is_: Mapping[str, Any], key: str) -> str:
    scene = is_["scene"]
    if key == "fingerprint":
        return f"{scene}: its inputs changed since the plan was made (an image or a template?)"
    if key == "action":
        return (
            f"{scene}: planned to {was.get('action')}, now it would {is_['action']} "
            f"({is_['reason']})"
        )
    return f"{scene}: its {key} was {was.get(key)}, now {is_[key]}"

